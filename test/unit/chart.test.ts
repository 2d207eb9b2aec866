/**
 * The chart is generated from the machine, and docs/design.md shows the current one.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { chartOf, toDot, toMermaid } from '../../src/chart.js';
import { sessionTable } from '../../src/fsm.js';

describe('toDot', () => {
  const dot = toDot();

  it('gives every edge the id the compiled machine and the traces use', () => {
    const { edges } = chartOf();
    const compiled = new Set(sessionTable.leaves.flatMap((leaf) => [...leaf.on.values()].flat().map((t) => t.edge)));
    for (const edge of edges) {
      assert.ok(dot.includes(`id="${edge.id}"`), `edge ${edge.id} in the DOT`);
      assert.ok(compiled.has(edge.id), `edge ${edge.id} in the compiled table`);
    }
    assert.equal(compiled.size, edges.length);
  });

  it('draws compound states as clusters and final states as double circles', () => {
    assert.match(dot, /subgraph "cluster_loaded" \{/);
    assert.match(
      dot,
      /"persisted" \[label="persisted\\ncreate, patch, move, replace", id="state:persisted", shape=doublecircle/,
    );
  });

  it('labels each final state with the Redis commands sent on the way to it', () => {
    assert.match(dot, /"refreshed" \[label="refreshed\\nno write"/);
    assert.match(dot, /"destroyed" \[label="destroyed\\npatch, move, delete"/);
    assert.match(dot, /"gone" \[label="gone\\npatch, move"/);
  });
});

describe('toMermaid', () => {
  const chart = toMermaid();

  it('draws every state of the machine and every final state leads out', () => {
    for (const state of [
      'unloaded',
      'loading',
      'new',
      'invalid',
      'loaded',
      'loaded_invalidated',
      'loaded_replaced',
      'loaded_regenerated',
      'creating',
      'patching',
      'moving',
      'replacing',
      'deleting',
    ]) {
      assert.match(chart, new RegExp(`as ${state}\\b`));
    }
    for (const final of [
      'persisted',
      'refreshed',
      'untouched',
      'destroyed',
      'discarded',
      'gone',
      'rejected',
      'failed',
    ]) {
      assert.match(chart, new RegExp(`^  ${final} --> \\[\\*\\]$`, 'm'));
    }
    assert.match(chart, /new --> creating: request\.ended \/ planCreate/);
    assert.match(chart, /creating --> persisted: write\.stored/);
    assert.match(chart, /loaded_regenerated --> rejected: request\.ended \[cookieBlocked\] \/ noteCookieRefused/);
  });

  it('is the chart docs/design.md shows', () => {
    const design = readFileSync(new URL('../../docs/design.md', import.meta.url), 'utf8');
    const block = /```mermaid\n([\s\S]*?)```/.exec(design)?.[1];
    assert.equal(block, chart, 'docs/design.md chart is stale: paste the output of toMermaid()');
  });
});
