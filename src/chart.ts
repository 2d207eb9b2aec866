/**
 * The session machine as a picture: Mermaid `stateDiagram-v2` text generated from the machine
 * definition itself (so it cannot drift from what runs; a test compares it with the README).
 */
import type { AnyStateMachine } from 'xstate';
import { sessionMachine } from '../machines/session.machine.js';
import { nameOf, type MachineNode } from './fsm.js';

function nodeId(node: MachineNode): string {
  return node.path.join('_') || 'root';
}

function isWithin(node: MachineNode, ancestor: MachineNode): boolean {
  for (let n: MachineNode | undefined = node; n; n = n.parent) if (n === ancestor) return true;
  return false;
}

/**
 * Mermaid `stateDiagram-v2` of a machine (by default the session machine). Compound states are
 * drawn as composites; each edge reads `event [guard] / action`; final states lead to `[*]`.
 */
export function toMermaid(machine: AnyStateMachine = sessionMachine): string {
  const root = machine.root as unknown as MachineNode;
  const lines = ['stateDiagram-v2'];
  const edgesBy = new Map<MachineNode, string[]>();
  const all: MachineNode[] = [];
  const collect = (node: MachineNode) => {
    all.push(node);
    for (const child of Object.values(node.states)) collect(child);
  };
  collect(root);

  // Each edge is drawn in the innermost composite holding both ends (Mermaid wants it there).
  for (const node of all) {
    for (const [event, list] of node.transitions) {
      for (const t of list) {
        const target = t.target?.[0] ?? node;
        let home = node.parent ?? root;
        while (home !== root && !(isWithin(target, home) && isWithin(node, home))) home = home.parent ?? root;
        if (target === node.parent || (target.parent === node && node !== root)) home = node;
        const guard = t.guard === undefined ? '' : ` [${nameOf(t.guard, 'guard')}]`;
        const actions = t.actions.length ? ` / ${t.actions.map((a) => nameOf(a, 'action')).join(', ')}` : '';
        const list2 = edgesBy.get(home) ?? [];
        list2.push(`${nodeId(node)} --> ${nodeId(target)}: ${event}${guard}${actions}`);
        edgesBy.set(home, list2);
      }
    }
  }

  const draw = (node: MachineNode, indent: string) => {
    const initial = node.initial?.target[0];
    if (initial) lines.push(`${indent}[*] --> ${nodeId(initial)}`);
    for (const child of Object.values(node.states)) {
      if (child.type === 'compound') {
        lines.push(`${indent}state "${child.key}" as ${nodeId(child)} {`);
        draw(child, `${indent}  `);
        lines.push(`${indent}}`);
      } else {
        lines.push(`${indent}state "${child.key}" as ${nodeId(child)}`);
      }
    }
    for (const edge of edgesBy.get(node) ?? []) lines.push(`${indent}${edge}`);
    if (node === root) {
      for (const child of Object.values(node.states)) if (child.type === 'final') lines.push(`${indent}${nodeId(child)} --> [*]`);
    }
  };
  draw(root, '  ');
  return `${lines.join('\n')}\n`;
}
