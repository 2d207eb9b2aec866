/**
 * The session machine as a picture, generated from the machine definition itself (so it cannot
 * drift from what runs): Mermaid `stateDiagram-v2` text for docs (GitHub renders it) and Graphviz
 * DOT for images and the live chart page. Every edge carries the id the compiled machine and the
 * traces use (`edgeId()`), so a picture can show what requests did.
 */
import type { AnyStateMachine, AnyStateNode } from 'xstate';
import { sessionMachine } from '../machines/session.machine.js';
import { edgeId, nameOf } from './fsm.js';

/** One edge of the chart. */
export interface ChartEdge {
  /** `edgeId()`: `<state path>:<event>:<index>`. */
  readonly id: string;
  readonly from: AnyStateNode;
  readonly to: AnyStateNode;
  /** `event [guard] / actions` */
  readonly label: string;
}

function nodeId(node: AnyStateNode): string {
  return node.path.join('_') || 'root';
}

function isWithin(node: AnyStateNode, ancestor: AnyStateNode): boolean {
  for (let n: AnyStateNode | undefined = node; n; n = n.parent) if (n === ancestor) return true;
  return false;
}

/** Every state node (root first) and every edge of a machine. */
export function chartOf(machine: AnyStateMachine = sessionMachine): {
  root: AnyStateNode;
  nodes: AnyStateNode[];
  edges: ChartEdge[];
} {
  const root: AnyStateNode = machine.root;
  const nodes: AnyStateNode[] = [];
  const collect = (node: AnyStateNode) => {
    nodes.push(node);
    for (const child of Object.values(node.states)) collect(child);
  };
  collect(root);
  const edges: ChartEdge[] = [];
  for (const node of nodes) {
    for (const [event, list] of node.transitions) {
      list.forEach((t, index) => {
        const guard = t.guard === undefined ? '' : ` [${nameOf(t.guard, 'guard')}]`;
        const actions = t.actions.length ? ` / ${t.actions.map((a) => nameOf(a, 'action')).join(', ')}` : '';
        edges.push({
          id: edgeId(node, event, index),
          from: node,
          to: t.target?.[0] ?? node,
          label: `${event}${guard}${actions}`,
        });
      });
    }
  }
  return { root, nodes, edges };
}

/** The Redis commands a state sends, from its `sends:<command>` tags. */
function sends(node: AnyStateNode): string[] {
  return node.tags.filter((t) => t.startsWith('sends:')).map((t) => t.slice('sends:'.length));
}

/**
 * What a final state's request sent after `await next()`: the commands of the states with an edge
 * into it (`create, patch`…), or `no write`. A reader of the chart sees each ending's cost.
 */
export function finalCommands(final: AnyStateNode, edges: readonly ChartEdge[]): string {
  const commands = new Set<string>();
  let direct = false;
  for (const edge of edges) {
    if (edge.to !== final) continue;
    const sent = sends(edge.from);
    if (sent.length === 0) direct = true;
    for (const command of sent) commands.add(command);
  }
  if (commands.size === 0) return 'no write';
  return `${direct ? 'none, ' : ''}${[...commands].join(', ')}`;
}

/** A state's label: its name, and for a final state the commands sent on the way to it. */
function labelOf(node: AnyStateNode, edges: readonly ChartEdge[]): string {
  return node.type === 'final' ? `${node.key} (${finalCommands(node, edges)})` : node.key;
}

/**
 * Mermaid `stateDiagram-v2` of a machine (by default the session machine). Compound states are
 * drawn as composites; each edge reads `event [guard] / action`; final states lead to `[*]`.
 */
export function toMermaid(machine: AnyStateMachine = sessionMachine): string {
  const { root, edges } = chartOf(machine);
  const lines = ['stateDiagram-v2'];
  const edgesBy = new Map<AnyStateNode, string[]>();

  // Each edge is drawn in the innermost composite holding both ends but being neither (Mermaid
  // wants it there; an edge from a composite to its own child drawn inside it is a cycle to Mermaid).
  for (const edge of edges) {
    const { from, to } = edge;
    let home = from.parent ?? root;
    while (home !== root && (home === to || home === from || !(isWithin(to, home) && isWithin(from, home))))
      home = home.parent ?? root;
    const list = edgesBy.get(home) ?? [];
    list.push(`${nodeId(from)} --> ${nodeId(to)}: ${edge.label}`);
    edgesBy.set(home, list);
  }

  const draw = (node: AnyStateNode, indent: string) => {
    const initial = node.initial.target[0];
    if (initial) lines.push(`${indent}[*] --> ${nodeId(initial)}`);
    for (const child of Object.values(node.states)) {
      if (child.type === 'compound') {
        lines.push(`${indent}state "${child.key}" as ${nodeId(child)} {`);
        draw(child, `${indent}  `);
        lines.push(`${indent}}`);
      } else {
        lines.push(`${indent}state "${labelOf(child, edges)}" as ${nodeId(child)}`);
      }
    }
    for (const edge of edgesBy.get(node) ?? []) lines.push(`${indent}${edge}`);
    if (node === root) {
      for (const child of Object.values(node.states))
        if (child.type === 'final') lines.push(`${indent}${nodeId(child)} --> [*]`);
    }
  };
  draw(root, '  ');
  return `${lines.join('\n')}\n`;
}

const quote = (text: string) => `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;

/**
 * Graphviz DOT of a machine (by default the session machine). Compound states are clusters with an
 * anchor point that their own edges start from; final states are double circles; each edge's `id`
 * is its `edgeId()`, which Graphviz keeps in the SVG (`<g id="…" class="edge">`).
 */
export function toDot(machine: AnyStateMachine = sessionMachine): string {
  const { root, edges } = chartOf(machine);
  const lines = [
    'digraph session {',
    '  compound=true; rankdir=LR; fontname="Helvetica"; fontsize=12;',
    '  node [shape=box, style="rounded", fontname="Helvetica", fontsize=12];',
    '  edge [fontname="Helvetica", fontsize=10];',
  ];
  const anchor = (node: AnyStateNode) => (node.type === 'compound' ? `${nodeId(node)}__anchor` : nodeId(node));
  const draw = (node: AnyStateNode, indent: string) => {
    const initial = node.initial.target[0];
    if (initial) {
      lines.push(`${indent}${quote(`${nodeId(node)}__start`)} [shape=point, width=0.12, label=""];`);
      lines.push(`${indent}${quote(`${nodeId(node)}__start`)} -> ${quote(anchor(initial))};`);
    }
    for (const child of Object.values(node.states)) {
      if (child.type === 'compound') {
        lines.push(`${indent}subgraph ${quote(`cluster_${nodeId(child)}`)} {`);
        lines.push(
          `${indent}  label=${quote(child.key)}; style="rounded"; id=${quote(`state:${child.path.join('.')}`)};`,
        );
        lines.push(`${indent}  ${quote(anchor(child))} [shape=point, width=0.05, label=""];`);
        draw(child, `${indent}  `);
        lines.push(`${indent}}`);
      } else {
        const shape = child.type === 'final' ? ', shape=doublecircle, style=""' : '';
        const label = child.type === 'final' ? `${child.key}\n${finalCommands(child, edges)}` : child.key;
        const id = `state:${child.path.join('.')}`;
        lines.push(`${indent}${quote(nodeId(child))} [label=${quote(label)}, id=${quote(id)}${shape}];`);
      }
    }
  };
  draw(root, '  ');
  for (const edge of edges) {
    const tail = edge.from.type === 'compound' ? `, ltail=${quote(`cluster_${nodeId(edge.from)}`)}` : '';
    const head =
      edge.to.type === 'compound' && !isWithin(edge.from, edge.to)
        ? `, lhead=${quote(`cluster_${nodeId(edge.to)}`)}`
        : '';
    const attributes = `label=${quote(edge.label)}, id=${quote(edge.id)}${tail}${head}`;
    lines.push(`  ${quote(anchor(edge.from))} -> ${quote(anchor(edge.to))} [${attributes}];`);
  }
  lines.push('}');
  return `${lines.join('\n')}\n`;
}
