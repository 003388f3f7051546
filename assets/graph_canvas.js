// Agent Studio graph canvas: a Vue component around Vue Flow, used by studio/canvas.py.
//
// The server owns the graph. This component shows `nodes`/`edges` (props), and reports what the
// person did as events (add, connect, move, remove, select, paste, shortcut); the server
// answers with a new graph (set_graph) where it changed something. User strings are only ever
// rendered as text ({{ }} interpolation, text children, title attributes): never v-html /
// innerHTML. Vue Flow's CSS comes with the page (studio/canvas.py adds it), so the flow mounts
// at once.
//
// Speed (300 nodes / 400 edges, see tests/bench/bench_canvas.py): nodes and edges are
// functional components (no component instance, no watchers), node handles are plain elements
// that share one `useHandle` (Vue Flow's Handle component is a component with five computed
// values and a `useHandle` of its own, twice per node), and the classes the canvas renders are
// shown to NiceGUI's Tailwind runtime before the graph is (see TAILWIND_SEED).
import { h, inject, markRaw, onBeforeUnmount, toRaw } from "vue";
import {
  EdgeLabelRenderer,
  MarkerType,
  Panel,
  VueFlow,
  getBezierPath,
  useHandle,
  useVueFlow,
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
const HUB = Symbol("graph canvas handles");

// NiceGUI's Tailwind runtime (on unless `ui.run(tailwind=False)`) watches every DOM change and,
// whenever an element brings a class it has not seen yet, rebuilds its stylesheet: the browser
// then restyles the whole page. Vue Flow adds its elements in several batches, so a 300-node
// graph was restyled several times while it opened. Showing every class the canvas renders
// once, before the graph, costs one rebuild while the page is small. A class missing here
// only costs that extra rebuild (tests/e2e/test_canvas.py checks the list).
const TAILWIND_SEED = [
  "bottom", "connectable", "connectableend", "connectablestart", "connecting",
  "connectionindicator", "dragging", "draggable", "left", "nodrag", "nopan", "right",
  "selectable", "selected", "source", "target", "top", "valid",
  "gc-conditional", "gc-diff-added", "gc-diff-changed", "gc-diff-removed", "gc-edge-label",
  "gc-edge-text", "gc-end", "gc-error", "gc-error-text", "gc-flow", "gc-minimap", "gc-node",
  "gc-node-label", "gc-node-type", "gc-palette", "gc-palette-description", "gc-palette-empty",
  "gc-palette-group", "gc-palette-groups", "gc-palette-item", "gc-palette-search",
  "gc-palette-title", "gc-palette-type", "gc-readonly", "gc-root", "gc-toolbar",
  "vue-flow", "vue-flow__arrowhead", "vue-flow__background", "vue-flow__connection",
  "vue-flow__connection-path", "vue-flow__connectionline", "vue-flow__container",
  "vue-flow__controls", "vue-flow__controls-button", "vue-flow__controls-zoomin",
  "vue-flow__controls-zoomout", "vue-flow__edge", "vue-flow__edge-interaction",
  "vue-flow__edge-labels", "vue-flow__edge-path", "vue-flow__edge-studio", "vue-flow__edges",
  "vue-flow__handle", "vue-flow__handle-connecting", "vue-flow__handle-left",
  "vue-flow__handle-null", "vue-flow__handle-right", "vue-flow__handle-valid",
  "vue-flow__marker", "vue-flow__node", "vue-flow__node-end", "vue-flow__node-studio",
  "vue-flow__nodes", "vue-flow__pane", "vue-flow__panel", "vue-flow__selection",
  "vue-flow__transformationpane", "vue-flow__viewport",
];
let tailwindSeed = null;
let seedWatch = null;
function dropTailwindSeed() {
  seedWatch?.disconnect();
  tailwindSeed?.remove(); // the runtime keeps what it has seen
  tailwindSeed = seedWatch = null;
}
if (document.querySelector('style[type="text/tailwindcss"]')) {
  tailwindSeed = document.createElement("div");
  tailwindSeed.hidden = true;
  tailwindSeed.className = TAILWIND_SEED.join(" ");
  // The runtime collects the page's classes and writes its <style> in one go: once it has
  // written after the seed came, it has seen the seed (usually within this very task, so no
  // selector ever finds it). At the latest the seed goes when the flow is ready (onInit).
  seedWatch = new MutationObserver((records) => {
    if (records.some((record) => record.target.nodeName === "STYLE")) dropTailwindSeed();
  });
  seedWatch.observe(document.head, { childList: true, characterData: true, subtree: true });
  document.body.appendChild(tailwindSeed);
}

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

// Node handles. Vue Flow finds handles by their classes and data attributes (handle bounds,
// the handle under the pointer when a connection ends), so plain elements with the same
// attributes work; pressing or clicking one starts a connection through the canvas's one
// `useHandle` (HandleHub), exactly as Vue Flow's Handle component would.
function handle(hub, nodeId, type, position, connectable) {
  const classes = [
    "vue-flow__handle", `vue-flow__handle-${position}`, "vue-flow__handle-null", "nodrag", "nopan",
    type,
  ];
  if (connectable) classes.push("connectable");
  classes.push("connectablestart", "connectableend");
  if (connectable) classes.push("connectionindicator");
  return h("div", {
    "data-id": `${hub.flowId}-${nodeId}-null-${type}`,
    "data-nodeid": nodeId,
    "data-handlepos": position,
    class: classes.join(" "),
    onMousedown: hub.onPointerDown,
    onTouchstartPassive: hub.onPointerDown,
    onClick: hub.onClick,
  });
}

function handleHub() {
  const hub = { flowId: "", start: null };
  const startFrom = (event, click) => {
    const element = event.currentTarget;
    if (!hub.start || !element.classList.contains("connectable")) return;
    const type = element.classList.contains("target") ? "target" : "source";
    hub.start(event, element.getAttribute("data-nodeid"), type, click);
  };
  hub.onPointerDown = (event) => {
    if (!("clientX" in event) || event.button === 0) startFrom(event, false);
  };
  hub.onClick = (event) => startFrom(event, true);
  return markRaw(hub);
}

// Lives inside <VueFlow>: the one `useHandle` every node handle starts its connections with.
const HandleHub = {
  name: "GraphCanvasHandles",
  setup() {
    const hub = inject(HUB);
    const from = { nodeId: "", type: "source" };
    const { handlePointerDown, handleClick } = useHandle({
      nodeId: () => from.nodeId,
      handleId: null,
      type: () => from.type,
    });
    hub.flowId = useVueFlow().id;
    hub.start = (event, nodeId, type, click) => {
      from.nodeId = nodeId;
      from.type = type;
      if (click) handleClick(event);
      else handlePointerDown(event);
    };
    onBeforeUnmount(() => {
      hub.start = null;
    });
    return () => null;
  },
};

// Functional components: Vue Flow re-renders a node or edge when it changes anyway, so an
// instance with its own reactive state would only add cost (300 nodes + 400 edges).
function StudioNode({ id, data, connectable }) {
  const hub = inject(HUB);
  return h(
    "div",
    {
      class: ["gc-node", ...styleClasses(data)].join(" "),
      title: data.error || null,
      "data-node-type": data.type,
    },
    [
      handle(hub, id, "target", "left", connectable),
      h("div", { class: "gc-node-label" }, data.label),
      h("div", { class: "gc-node-type" }, data.type),
      data.error ? h("div", { class: "gc-error-text" }, data.error) : null,
      handle(hub, id, "source", "right", connectable),
    ],
  );
}
StudioNode.props = ["id", "data", "connectable"];
StudioNode.inheritAttrs = false;

function EndNode({ connectable }) {
  const hub = inject(HUB);
  return h("div", { class: "gc-end", title: "End of the graph" }, [
    handle(hub, END, "target", "left", connectable),
    "END",
  ]);
}
EndNode.props = ["connectable"];
EndNode.inheritAttrs = false;

function StudioEdge(props) {
  const { id, data, markerEnd } = props;
  const [path, labelX, labelY] = getBezierPath(props);
  const shown = data.conditional && data.label ? data.label : "";
  const parts = [
    h("path", { id: `gc-edge-${id}`, d: path, class: "vue-flow__edge-path", "marker-end": markerEnd }),
    h("path", {
      fill: "none",
      d: path,
      "stroke-width": 20,
      "stroke-opacity": 0,
      class: "vue-flow__edge-interaction",
    }),
  ];
  if (shown || data.error) {
    const label = h(
      "div",
      {
        class: ["gc-edge-label nodrag nopan", { "gc-error": !!data.error }],
        style: { transform: `translate(-50%, -50%) translate(${labelX}px, ${labelY}px)` },
        "data-edge-id": id,
        title: data.error || null,
      },
      [
        shown ? h("div", { class: "gc-edge-text" }, shown) : null,
        data.error ? h("div", { class: "gc-error-text" }, data.error) : null,
      ],
    );
    parts.push(h(EdgeLabelRenderer, null, { default: () => label }));
  }
  return parts;
}
StudioEdge.props = [
  "id", "sourceX", "sourceY", "targetX", "targetY", "sourcePosition", "targetPosition",
  "data", "markerEnd",
];
StudioEdge.inheritAttrs = false;

export default {
  components: { VueFlow, Background, Controls, GraphMiniMap, HandleHub, Panel },
  props: {
    nodes: { type: Array, default: () => [] },
    edges: { type: Array, default: () => [] },
    palette: { type: Array, default: () => [] },
    readonly: { type: Boolean, default: false },
  },
  // Declared so that NiceGUI's listeners never land on Vue Flow's own events of the same name.
  emits: ["add", "connect", "move", "remove", "select", "paste", "shortcut"],
  provide() {
    this.hub = handleHub();
    return { [HUB]: this.hub };
  },
  data() {
    return {
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
    this.pendingEdges = null;
    this.onKeydown = this.onKeydown.bind(this);
  },
  mounted() {
    document.addEventListener("keydown", this.onKeydown);
  },
  beforeUnmount() {
    document.removeEventListener("keydown", this.onKeydown);
    clearTimeout(this.keyboardTimer);
    dropTailwindSeed();
  },
  methods: {
    onInit(instance) {
      this.flow = markRaw(instance);
      this.hub.flowId = instance.id;
      dropTailwindSeed();
      this.applyGraph();
    },
    onNodesInitialized() {
      if (this.fitted) return;
      this.fitted = true;
      if (this.pendingEdges) this.flow.setEdges(this.pendingEdges);
      this.pendingEdges = null;
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
      const known = JSON.stringify(this.selectionOf(graph.nodes, graph.edges));
      if (this.selectionQueued) {
        // A selection made here that the server has not heard yet (its `select` is queued):
        // this graph was built before it, so the person's newer choice stays and is sent.
        const unsent = this.currentSelection();
        for (const n of graph.nodes) n.selected = unsent.nodes.includes(n.id);
        for (const e of graph.edges) e.selected = unsent.edges.includes(e.id);
      }
      this.positions = new Map(graph.nodes.map((n) => [n.id, { ...n.position }]));
      this.flow.setNodes(graph.nodes);
      // The first graph's edges wait until its nodes are measured: an edge drawn before that
      // is drawn again for every change of its nodes' sizes and handles (four times in all).
      if (this.fitted || !graph.nodes.length) this.flow.setEdges(graph.edges);
      else this.pendingEdges = graph.edges;
      this.lastSelection = known; // what the server knows
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
        <VueFlow :node-types="nodeTypes" :edge-types="edgeTypes"
                 :nodes-draggable="!readonly" :nodes-connectable="!readonly" :elements-selectable="true"
                 :disable-keyboard-a11y="readonly"
                 :delete-key-code="null" :multi-selection-key-code="multiKeys" selection-key-code="Shift"
                 :min-zoom="0.05" :max-zoom="2"
                 @init="onInit" @nodes-initialized="onNodesInitialized" @connect="onConnect"
                 @node-drag-stop="onDragStop" @nodes-change="onNodesChange" @edges-change="onEdgesChange">
          <Background :gap="16" />
          <Controls :show-fit-view="false" :show-interactive="false" />
          <GraphMiniMap />
          <HandleHub />
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
