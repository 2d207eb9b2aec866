/**
 * The request-path form of the session machine.
 *
 * An XState actor per request costs tens of µs (bench/README.md, "The machine"),
 * more than the rest of the middleware. So the machine definition is compiled once, at import, into a table (leaf
 * state × event type → candidate transitions, deepest state first) that a small interpreter runs.
 * Guards, context updates and outputs are the very functions of `src/policy.ts` that the XState
 * machine calls, looked up by the names the chart uses; `test/machine.test.ts` proves the two
 * runtimes equivalent on every path the graph has and on random event sequences.
 */
import type { AnyStateMachine, AnyStateNode } from 'xstate';
import { sessionMachine } from '../machines/session.machine.js';
import {
  assigners,
  guards,
  initialContext,
  outputs,
  type Assigner,
  type Guard,
  type Output,
  type SessionContext,
  type SessionEvent,
  type SessionInput,
  type SessionOutput,
} from './policy.js';

interface CompiledTransition {
  /** Which edge of the chart this is (`edgeId()`): what traces and the live chart count. */
  readonly edge: string;
  readonly guard: Guard | undefined;
  /** Leaf index entered, or -1 for a targetless transition (context update only). */
  readonly target: number;
  readonly actions: readonly Assigner[];
}

interface Leaf {
  /** Dotted state path, e.g. `loaded.dirty`: what `snapshot.value` flattens to. */
  readonly path: string;
  /** The chart's tags of the state and its ancestors (`sends:load`: the state the load is sent in). */
  readonly tags: ReadonlySet<string>;
  readonly output: Output | undefined;
  readonly on: ReadonlyMap<string, readonly CompiledTransition[]>;
}

/** The compiled table of a machine. */
export interface CompiledMachine {
  readonly leaves: readonly Leaf[];
  readonly initial: number;
}

/** The id of the `index`-th transition a state node has for an event: shared by the compiled
 *  table, the traces and the chart exporters. */
export function edgeId(node: AnyStateNode, eventType: string, index: number): string {
  return `${node.path.join('.') || '(machine)'}:${eventType}:${index}`;
}

/** The name of a guard or action reference: XState keeps named ones as strings or `{ type }`. */
export function nameOf(ref: unknown, what: string): string {
  if (typeof ref === 'string') return ref;
  if (ref && typeof ref === 'object' && typeof (ref as { type?: unknown }).type === 'string') {
    return (ref as { type: string }).type;
  }
  throw new TypeError(`session machine: only named ${what}s are supported, got ${String(ref)}`);
}

function lookup<T>(table: Record<string, T>, name: string, what: string): T {
  if (!Object.hasOwn(table, name))
    throw new TypeError(`session machine: unknown ${what} "${name}" (not in src/policy.ts)`);
  return table[name] as T;
}

/** Walk `machine.root` once and build the table. Throws on anything outside the supported subset. */
export function compileMachine(machine: AnyStateMachine): CompiledMachine {
  const root: AnyStateNode = machine.root;
  const leaves: Leaf[] = [];
  const leafIndex = new Map<AnyStateNode, number>();
  const nodes: AnyStateNode[] = [];

  const visit = (node: AnyStateNode): void => {
    if (node.type === 'parallel' || node.type === 'history') {
      throw new TypeError(`session machine: ${node.type} state "${node.path.join('.')}" is not supported`);
    }
    if (node.entry.length > 0 || node.exit.length > 0 || node.always || node.config.after || node.config.invoke) {
      throw new TypeError(`session machine: state "${node.path.join('.')}" uses entry/exit/always/after/invoke`);
    }
    if (node.type === 'final' && node.parent !== root) {
      throw new TypeError(`session machine: final state "${node.path.join('.')}" must be top-level`);
    }
    nodes.push(node);
    for (const child of Object.values(node.states)) visit(child);
  };
  visit(root);

  const atomic = nodes.filter((n) => n.type === 'atomic' || n.type === 'final');
  for (const node of atomic) leafIndex.set(node, leafIndex.size);

  const enter = (node: AnyStateNode): number => {
    let n = node;
    while (n.type === 'compound') {
      const next = n.initial.target[0];
      if (!next) throw new TypeError(`session machine: compound state "${n.path.join('.')}" has no initial state`);
      n = next;
    }
    const index = leafIndex.get(n);
    if (index === undefined) throw new TypeError(`session machine: cannot enter "${n.path.join('.')}"`);
    return index;
  };

  const compileTransitions = (node: AnyStateNode): Map<string, CompiledTransition[]> => {
    const on = new Map<string, CompiledTransition[]>();
    for (const [eventType, list] of node.transitions) {
      on.set(
        eventType,
        list.map((t, index) => {
          if (t.target && t.target.length > 1)
            throw new TypeError('session machine: multiple targets are not supported');
          const target = t.target?.[0];
          return {
            edge: edgeId(node, eventType, index),
            guard: t.guard === undefined ? undefined : lookup<Guard>(guards, nameOf(t.guard, 'guard'), 'guard'),
            target: target ? enter(target) : -1,
            actions: t.actions.map((a) => lookup<Assigner>(assigners, nameOf(a, 'action'), 'action')),
          };
        }),
      );
    }
    return on;
  };

  for (const node of atomic) {
    // Deepest first, as XState selects transitions: a leaf's own candidates, then its ancestors'.
    const on = new Map<string, CompiledTransition[]>();
    for (let n: AnyStateNode | undefined = node; n; n = n.parent) {
      for (const [eventType, list] of compileTransitions(n)) {
        on.set(eventType, [...(on.get(eventType) ?? []), ...list]);
      }
    }
    const tags = new Set<string>();
    for (let n: AnyStateNode | undefined = node; n; n = n.parent) for (const tag of n.tags) tags.add(tag);
    leaves.push({
      path: node.path.join('.'),
      tags,
      output: node.type === 'final' ? lookup<Output>(outputs, node.key, 'final state output') : undefined,
      on,
    });
  }

  return { leaves, initial: enter(root) };
}

/** The session machine, compiled once at import. */
export const sessionTable: CompiledMachine = compileMachine(sessionMachine);

/** One step of a traced run. */
export interface TraceStep {
  readonly event: string;
  readonly from: string;
  readonly to: string;
  /** The chart edge taken (`edgeId()`). */
  readonly edge: string;
}

/** One request's run of the machine: the interpreter of a compiled table. */
export class MachineRun {
  /** Set to an array to record every transition taken (debug traces, the live chart). */
  trace: TraceStep[] | null = null;
  /** Index of the current leaf state. */
  state: number;
  readonly context: SessionContext;
  /** Set when a final state is reached. */
  output: SessionOutput | undefined = undefined;

  constructor(
    input: SessionInput,
    readonly table: CompiledMachine = sessionTable,
  ) {
    this.state = table.initial;
    this.context = initialContext(input);
  }

  /** Dotted path of the current state, e.g. `loaded.dirty`. */
  get value(): string {
    return (this.table.leaves[this.state] as Leaf).path;
  }

  /** True once a final state is reached; later events are ignored, as an XState actor does. */
  get done(): boolean {
    return this.output !== undefined;
  }

  send(event: SessionEvent): void {
    if (this.output !== undefined) return;
    const candidates = (this.table.leaves[this.state] as Leaf).on.get(event.type);
    if (candidates === undefined) return;
    const context = this.context;
    for (const t of candidates) {
      if (t.guard !== undefined && !t.guard(context, event)) continue;
      if (this.trace !== null) {
        const to = t.target >= 0 ? (this.table.leaves[t.target] as Leaf).path : this.value;
        this.trace.push({ event: event.type, from: this.value, to, edge: t.edge });
      }
      for (const action of t.actions) Object.assign(context, action(context, event));
      if (t.target >= 0) {
        this.state = t.target;
        const leaf = this.table.leaves[t.target] as Leaf;
        if (leaf.output !== undefined) this.output = leaf.output(context, event);
      }
      return;
    }
  }
}
