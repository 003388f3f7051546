// Agent Studio graph canvas: a Vue component around Vue Flow, used by studio/canvas.py.
//
// The server owns the graph. This component shows `nodes`/`edges` (props), and reports what the
// person did as events (add, connect, move, remove, select, paste, shortcut); the server
// answers with a new graph (set_graph) where it changed something. User strings are only ever
// rendered as text ({{ }} interpolation, title attributes): never v-html / innerHTML.
import { markRaw, toRaw } from "vue";
import {
  BaseEdge,
  EdgeLabelRenderer,
  Handle,
  MarkerType,
  Panel,
  Position,
  VueFlow,
  getBezierPath,
} from "@vue-flow/core";
import { Background } from "@vue-flow/background";
import { Controls } from "@vue-flow/controls";
import { GraphMiniMap } from "graph_canvas_minimap";

const END = "__end__";
const DRAG_MIME = "application/x-agent-studio-node";
const DIFFS = new Set(["added", "removed", "changed"]);
const END_GAP = 260;
const END_Y_OFFSET = 6; // centres the END pill (32px) on a one-line node (44px)
const PASTE_STEP = 40;
const INITIAL_MIN_ZOOM = 0.5;
const VENDOR_CSS = [
  "@vue-flow/core/style.css",
  "@vue-flow/core/theme-default.css",
  "@vue-flow/controls/style.css",
];

// Start loading Vue Flow's CSS as soon as this module runs; the canvas mounts once it is in.
// The import map (NiceGUI, esm= option) knows where the prepared npm packages are served.
const vendorCss = Promise.all(
  VENDOR_CSS.map((spec) => {
    const href = import.meta.resolve(spec);
    return new Promise((resolve) => {
      const link = document.createElement("link");
      link.rel = "stylesheet";
      link.href = href;
      link.onload = resolve;
      link.onerror = () => {
        console.error(`graph canvas: could not load ${href}`);
        resolve();
      };
      document.head.appendChild(link);
    });
  }),
);

const text = (value) => (value === null || value === undefined ? "" : String(value));
const diffOf = (value) => (DIFFS.has(value) ? value : null);
const round = (value) => Math.round(Number(value) || 0);

function styleClasses(item) {
  const classes = [];
  if (item.error) classes.push("gc-error");
  if (item.diff) classes.push(`gc-diff-${item.diff}`);
  return classes;
}

function toFlowNodes(nodes) {
  const flow = nodes.map((node) => {
    const id = text(node.id);
    const data = {
      label: text(node.label),
      type: text(node.type),
      group: text(node.group),
      error: node.error ? text(node.error) : null,
      diff: diffOf(node.diff),
    };
    const position = { x: Number(node.position?.x) || 0, y: Number(node.position?.y) || 0 };
    if (id === END) return endNode(position);
    return { id, type: "studio", position, selected: !!node.selected, data };
  });
  return flow;
}

function endNode(position) {
  return {
    id: END,
    type: "end",
    position,
    data: {},
    draggable: false,
    selectable: false,
    deletable: false,
  };
}

function endPosition(nodes, edges) {
  const byId = new Map(nodes.map((node) => [node.id, node]));
  const sources = edges.filter((e) => e.target === END).map((e) => byId.get(e.source));
  const known = sources.filter(Boolean);
  if (!known.length) return { x: 0, y: 0 };
  const x = Math.max(...known.map((n) => n.position.x)) + END_GAP;
  const y = known.reduce((sum, n) => sum + n.position.y, 0) / known.length + END_Y_OFFSET;
  return { x, y };
}

function toFlowEdges(edges, nodeIds) {
  const flow = [];
  for (const edge of edges) {
    const source = text(edge.source);
    const target = text(edge.target);
    if (!nodeIds.has(source) || !nodeIds.has(target)) continue;
    const data = {
      label: text(edge.label),
      conditional: !!edge.conditional,
      error: edge.error ? text(edge.error) : null,
      diff: diffOf(edge.diff),
    };
    const classes = styleClasses(data);
    if (data.conditional) classes.push("gc-conditional");
    const color = data.error || data.diff === "removed" ? "#dc2626" : undefined;
    flow.push({
      id: text(edge.id),
      source,
      target,
      type: "studio",
      class: classes.join(" "),
      selected: !!edge.selected,
      markerEnd: { type: MarkerType.ArrowClosed, color },
      data,
    });
  }
  return flow;
}

function buildGraph(nodes, edges) {
  const flowNodes = toFlowNodes(nodes);
  const ids = new Set(flowNodes.map((n) => n.id));
  if (!ids.has(END) && edges.some((e) => text(e.target) === END)) {
    const rawEdges = edges.map((e) => ({ source: text(e.source), target: text(e.target) }));
    flowNodes.push(endNode(endPosition(flowNodes, rawEdges)));
    ids.add(END);
  }
  return { nodes: flowNodes, edges: toFlowEdges(edges, ids) };
}

function isTyping(event) {
  const target = event.composedPath?.()[0] || event.target;
  if (!(target instanceof Element)) return false;
  if (target.isContentEditable) return true;
  return target.closest("input, textarea, select, [contenteditable]:not([contenteditable='false'])") !== null;
}

const StudioNode = {
  name: "GraphCanvasNode",
  inheritAttrs: false,
  components: { Handle },
  props: ["id", "data", "selected"],
  data: () => ({ left: Position.Left, right: Position.Right }),
  computed: {
    classes() {
      return styleClasses(this.data);
    },
  },
  template: `
    <div class="gc-node" :class="classes" :title="data.error || null" :data-node-type="data.type">
      <Handle type="target" :position="left" />
      <div class="gc-node-label">{{ data.label }}</div>
      <div class="gc-node-type">{{ data.type }}</div>
      <div v-if="data.error" class="gc-error-text">{{ data.error }}</div>
      <Handle type="source" :position="right" />
    </div>`,
};

const EndNode = {
  name: "GraphCanvasEnd",
  inheritAttrs: false,
  components: { Handle },
  data: () => ({ left: Position.Left }),
  template: `<div class="gc-end" title="End of the graph"><Handle type="target" :position="left" />END</div>`,
};

const StudioEdge = {
  name: "GraphCanvasEdge",
  inheritAttrs: false,
  components: { BaseEdge, EdgeLabelRenderer },
  props: [
    "id", "sourceX", "sourceY", "targetX", "targetY", "sourcePosition", "targetPosition",
    "data", "markerEnd",
  ],
  computed: {
    geometry() {
      const { sourceX, sourceY, targetX, targetY, sourcePosition, targetPosition } = this;
      return getBezierPath({ sourceX, sourceY, targetX, targetY, sourcePosition, targetPosition });
    },
    shownLabel() {
      return this.data.conditional && this.data.label ? this.data.label : "";
    },
    labelStyle() {
      const [, x, y] = this.geometry;
      return { transform: `translate(-50%, -50%) translate(${x}px, ${y}px)` };
    },
  },
  template: `
    <BaseEdge :id="'gc-edge-' + id" :path="geometry[0]" :marker-end="markerEnd" :interaction-width="20" />
    <EdgeLabelRenderer v-if="shownLabel || data.error">
      <div class="gc-edge-label nodrag nopan" :class="{ 'gc-error': !!data.error }" :style="labelStyle"
           :data-edge-id="id" :title="data.error || null">
        <div v-if="shownLabel" class="gc-edge-text">{{ shownLabel }}</div>
        <div v-if="data.error" class="gc-error-text">{{ data.error }}</div>
      </div>
    </EdgeLabelRenderer>`,
};

export default {
  components: { VueFlow, Background, Controls, GraphMiniMap, Panel },
  props: {
    nodes: { type: Array, default: () => [] },
    edges: { type: Array, default: () => [] },
    palette: { type: Array, default: () => [] },
    readonly: { type: Boolean, default: false },
  },
  // Declared so that NiceGUI's listeners never land on Vue Flow's own events of the same name.
  emits: ["add", "connect", "move", "remove", "select", "paste", "shortcut"],
  data() {
    return {
      cssReady: false,
      query: "",
      nodeTypes: markRaw({ studio: markRaw(StudioNode), end: markRaw(EndNode) }),
      edgeTypes: markRaw({ studio: markRaw(StudioEdge) }),
      multiKeys: ["Shift", "Meta", "Control"],
    };
  },
  computed: {
    shownPalette() {
      const query = this.query.trim().toLowerCase();
      const matches = (item) =>
        !query || [item.title, item.type, item.description].some((s) => text(s).toLowerCase().includes(query));
      return this.palette
        .map((group) => ({ group: text(group.group), items: (group.items || []).filter(matches) }))
        .filter((group) => group.items.length);
    },
  },
  watch: {
    nodes() {
      this.applyGraph();
    },
    edges() {
      this.applyGraph();
    },
  },
  created() {
    // Plain (non-reactive) instance state.
    this.flow = null;
    this.appliedGraph = "";
    this.positions = new Map();
    this.lastSelection = "";
    this.selectionQueued = false;
    this.keyboardMoves = {};
    this.keyboardTimer = null;
    this.clipboard = [];
    this.pasteCount = 0;
    this.fitted = false;
    this.onKeydown = this.onKeydown.bind(this);
  },
  async mounted() {
    document.addEventListener("keydown", this.onKeydown);
    await vendorCss;
    this.cssReady = true;
  },
  beforeUnmount() {
    document.removeEventListener("keydown", this.onKeydown);
    clearTimeout(this.keyboardTimer);
  },
  methods: {
    onInit(instance) {
      this.flow = markRaw(instance);
      this.applyGraph();
    },
    onNodesInitialized() {
      if (this.fitted) return;
      this.fitted = true;
      // First view: the whole graph if it is legible at half size, else its middle at half
      // size (labels stay readable; off-screen nodes also cost nothing to paint). Fit shows all.
      this.flow.fitView({ padding: 0.15, maxZoom: 1, minZoom: INITIAL_MIN_ZOOM });
    },
    applyGraph() {
      if (!this.flow) return;
      const nodes = toRaw(this.nodes);
      const edges = toRaw(this.edges);
      const signature = JSON.stringify([nodes, edges]);
      if (signature === this.appliedGraph) return;
      this.appliedGraph = signature;
      const graph = buildGraph(nodes, edges);
      this.positions = new Map(graph.nodes.map((n) => [n.id, { ...n.position }]));
      this.flow.setNodes(graph.nodes);
      this.flow.setEdges(graph.edges);
      this.lastSelection = JSON.stringify(this.selectionOf(graph.nodes, graph.edges));
    },
    fitView() {
      this.flow?.fitView({ padding: 0.15, maxZoom: 1 });
    },
    selectionOf(nodes, edges) {
      return {
        nodes: nodes.filter((n) => n.selected && n.id !== END).map((n) => n.id),
        edges: edges.filter((e) => e.selected).map((e) => e.id),
      };
    },
    currentSelection() {
      return this.selectionOf(this.flow.getSelectedNodes.value, this.flow.getSelectedEdges.value);
    },
    queueSelection() {
      if (this.selectionQueued) return;
      this.selectionQueued = true;
      setTimeout(() => {
        this.selectionQueued = false;
        if (!this.flow) return;
        const selection = this.currentSelection();
        const key = JSON.stringify(selection);
        if (key === this.lastSelection) return;
        this.lastSelection = key;
        this.$emit("select", selection);
      }, 0);
    },
    onNodesChange(changes) {
      let selection = false;
      for (const change of changes) {
        if (change.type === "select") selection = true;
        // Arrow keys move selected nodes without a drag: report those moves too.
        if (change.type === "position" && change.dragging === false && change.position) {
          this.keyboardMoves[change.id] = change.position;
        }
      }
      if (selection) this.queueSelection();
      if (Object.keys(this.keyboardMoves).length) {
        clearTimeout(this.keyboardTimer);
        this.keyboardTimer = setTimeout(() => this.flushKeyboardMoves(), 250);
      }
    },
    onEdgesChange(changes) {
      if (changes.some((change) => change.type === "select")) this.queueSelection();
    },
    flushKeyboardMoves() {
      const moved = this.keyboardMoves;
      this.keyboardMoves = {};
      this.emitMoves(Object.entries(moved).map(([id, position]) => ({ id, position })));
    },
    onDragStop({ nodes }) {
      this.emitMoves(nodes);
    },
    emitMoves(nodes) {
      if (this.readonly) return;
      const positions = {};
      for (const node of nodes) {
        if (node.id === END) continue;
        const position = { x: node.position.x, y: node.position.y };
        const known = this.positions.get(node.id);
        if (known && known.x === position.x && known.y === position.y) continue;
        this.positions.set(node.id, position);
        positions[node.id] = position;
      }
      if (Object.keys(positions).length) this.$emit("move", { positions });
    },
    onConnect(connection) {
      if (this.readonly || connection.source === END) return;
      this.$emit("connect", { source: connection.source, target: connection.target });
    },
    onPaletteDragStart(event, item) {
      event.dataTransfer.setData(DRAG_MIME, text(item.type));
      event.dataTransfer.effectAllowed = "copy";
    },
    onDragOver(event) {
      if (this.readonly || !event.dataTransfer?.types.includes(DRAG_MIME)) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
    },
    onDrop(event) {
      if (this.readonly || !this.flow) return;
      const type = event.dataTransfer?.getData(DRAG_MIME);
      const known = this.palette.some((group) => (group.items || []).some((item) => text(item.type) === type));
      if (!type || !known) return;
      event.preventDefault();
      const point = this.flow.screenToFlowCoordinate({ x: event.clientX, y: event.clientY });
      this.$emit("add", { type, position: { x: round(point.x), y: round(point.y) } });
    },
    removeSelection() {
      if (this.readonly || !this.flow) return;
      const selection = this.currentSelection();
      if (selection.nodes.length || selection.edges.length) this.$emit("remove", selection);
    },
    copySelection() {
      if (!this.flow) return;
      const nodes = this.currentSelection().nodes;
      if (!nodes.length) return;
      this.clipboard = nodes;
      this.pasteCount = 0;
    },
    paste() {
      if (this.readonly || !this.clipboard.length) return;
      this.pasteCount += 1;
      const step = PASTE_STEP * this.pasteCount;
      this.$emit("paste", { nodes: [...this.clipboard], offset: { x: step, y: step } });
    },
    shortcut(key) {
      if (key === "fit") this.fitView();
      else if (this.readonly) return;
      this.$emit("shortcut", { key });
    },
    onKeydown(event) {
      if (isTyping(event) || !this.$el?.isConnected || this.$el.offsetParent === null) return;
      const mod = event.ctrlKey || event.metaKey;
      const key = (event.key || "").toLowerCase();
      const is = (letter) => key === letter || event.code === `Key${letter.toUpperCase()}`;
      if (mod && is("s")) {
        event.preventDefault();
        this.shortcut("save");
      } else if (this.readonly) {
        return;
      } else if (mod && is("z")) {
        event.preventDefault();
        this.shortcut(event.shiftKey ? "redo" : "undo");
      } else if (mod && is("y")) {
        event.preventDefault();
        this.shortcut("redo");
      } else if (mod && is("c")) {
        this.copySelection();
      } else if (mod && is("v")) {
        event.preventDefault();
        this.paste();
      } else if (!mod && (event.key === "Delete" || event.key === "Backspace")) {
        event.preventDefault();
        this.removeSelection();
      }
    },
  },
  template: `
    <div class="gc-root" :class="{ 'gc-readonly': readonly }">
      <aside v-if="!readonly" class="gc-palette" aria-label="Node palette">
        <input v-model="query" class="gc-palette-search" type="search" placeholder="Search nodes"
               aria-label="Search nodes" />
        <div class="gc-palette-groups">
          <section v-for="(group, g) in shownPalette" :key="g" class="gc-palette-group">
            <h4>{{ group.group }}</h4>
            <div v-for="(item, i) in group.items" :key="i" class="gc-palette-item" draggable="true"
                 :data-type="item.type" :title="item.description || null"
                 @dragstart="onPaletteDragStart($event, item)">
              <span class="gc-palette-type">{{ item.type }}</span>
              <div class="gc-palette-title">{{ item.title }}</div>
              <div v-if="item.description" class="gc-palette-description">{{ item.description }}</div>
            </div>
          </section>
          <div v-if="!shownPalette.length" class="gc-palette-empty">No matching nodes</div>
        </div>
      </aside>
      <div class="gc-flow" @dragover="onDragOver" @drop="onDrop">
        <VueFlow v-if="cssReady" :node-types="nodeTypes" :edge-types="edgeTypes"
                 :nodes-draggable="!readonly" :nodes-connectable="!readonly" :elements-selectable="true"
                 :disable-keyboard-a11y="readonly"
                 :delete-key-code="null" :multi-selection-key-code="multiKeys" selection-key-code="Shift"
                 :min-zoom="0.05" :max-zoom="2"
                 @init="onInit" @nodes-initialized="onNodesInitialized" @connect="onConnect"
                 @node-drag-stop="onDragStop" @nodes-change="onNodesChange" @edges-change="onEdgesChange">
          <Background :gap="16" />
          <Controls :show-fit-view="false" :show-interactive="false" />
          <GraphMiniMap />
          <Panel position="top-right" class="gc-toolbar">
            <template v-if="!readonly">
              <button type="button" data-action="undo" title="Undo (Ctrl+Z)" @click="shortcut('undo')">Undo</button>
              <button type="button" data-action="redo" title="Redo (Ctrl+Shift+Z)" @click="shortcut('redo')">Redo</button>
              <button type="button" data-action="layout" title="Arrange the graph left to right"
                      @click="shortcut('layout')">Auto-layout</button>
              <button type="button" data-action="remove" title="Delete the selection (Delete)"
                      @click="removeSelection">Delete</button>
            </template>
            <button type="button" data-action="fit" title="Fit the graph into view" @click="shortcut('fit')">Fit</button>
          </Panel>
        </VueFlow>
      </div>
    </div>`,
};
