/**
 * The benches' numbers from the command line, each checked: a typo is an error that names its flag,
 * not a NaN that runs no round, times nothing or prints an empty table.
 */

/** A number given as `text` to `name` (a flag, `--rounds`, or a variable, `ROUNDS`; `fallback` when absent): whole and at least 1 unless said. */
export function numberOption(
  name: string,
  text: string | undefined,
  fallback: number,
  { whole = true, min = 1 }: { whole?: boolean; min?: number } = {},
): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n < min || (whole && !Number.isInteger(n)))
    throw new TypeError(
      `${name} takes ${whole ? 'a whole number' : 'a number'} of at least ${min}, not ${JSON.stringify(text)}`,
    );
  return n;
}

/** Whole numbers of at least 1 separated by commas, as `--connections 10,32`. */
export function numberList(name: string, text: string | undefined, fallback: string): number[] {
  const list = (text ?? fallback).split(',').map(Number);
  if (list.some((n) => !Number.isInteger(n) || n <= 0))
    throw new TypeError(`${name} takes positive integers separated by commas, not ${JSON.stringify(text ?? fallback)}`);
  return list;
}

/** The flags of the side-by-side HTTP benches: `rounds` of `seconds` each, after `warmup` seconds. */
export const TIMING_FLAGS = {
  rounds: { type: 'string' },
  seconds: { type: 'string' },
  warmup: { type: 'string' },
} as const;

export function timing(values: { rounds?: string; seconds?: string; warmup?: string }): {
  rounds: number;
  seconds: number;
  warmup: number;
} {
  return {
    rounds: numberOption('--rounds', values.rounds, 10),
    seconds: numberOption('--seconds', values.seconds, 1, { whole: false, min: 0.1 }),
    warmup: numberOption('--warmup', values.warmup, 2, { whole: false, min: 0 }),
  };
}
