// One approval card of the inbox (studio/pages/approval_card.py): the call the server computed
// and the decision buttons. One element per card keeps a page of 25 cards cheap to build.
//
// Every string here comes from the server and may hold markup a user, a graph author or a
// model wrote: it is only ever rendered as text ({{ }} interpolation) — never v-html.
// Buttons only report a click; the server decides who may decide, and what.
const BUTTONS = [
  { decision: "approve", label: "Approve", icon: "check", color: "positive" },
  { decision: "edit", label: "Edit arguments", icon: "edit", color: "primary" },
  { decision: "reject", label: "Reject", icon: "block", color: "negative" },
  { decision: "respond", label: "Answer", icon: "reply", color: "primary" },
];
const TIER_COLORS = { free: "grey", confirm: "orange", admin: "negative" };
const DEADLINE_CLASSES = {
  timed: "text-grey-9 bg-grey-2",
  overdue: "text-orange-900 bg-orange-50",
  escalated: "text-red-900 bg-red-50",
};

export default {
  props: { card: { type: Object, required: true } },
  emits: ["approve", "edit", "reject", "respond"],
  computed: {
    buttons() {
      const allowed = this.card.allowed || [];
      return BUTTONS.filter((b) => allowed.includes(b.decision));
    },
    tierColor() {
      return TIER_COLORS[this.card.tier] || "negative";
    },
    deadlineClass() {
      return DEADLINE_CLASSES[this.card.deadline_state] || DEADLINE_CLASSES.timed;
    },
    locked() {
      return Boolean(this.card.refusal) || Boolean(this.card.busy);
    },
  },
  template: `
    <q-card class="w-full q-pa-md column q-gutter-y-xs" :data-approval="card.approval_id">
      <div class="row items-center q-gutter-x-sm">
        <span class="text-lg font-semibold font-mono">{{ card.action }}</span>
        <q-badge outline :color="tierColor">{{ card.tier }}</q-badge>
        <q-badge v-if="card.deadline_state === 'escalated'" color="negative">escalated</q-badge>
        <q-badge v-if="card.deadline_state === 'overdue'" color="orange">overdue</q-badge>
        <q-space />
        <a class="text-sm" :href="card.run_url">open the run</a>
      </div>
      <div class="text-sm" style="white-space: pre-line">{{ card.context }}</div>
      <div v-if="card.deadline" class="text-sm q-pa-xs rounded" :class="deadlineClass"
           data-deadline>{{ card.deadline }}</div>
      <div v-if="card.tainted" class="text-sm text-orange-800 bg-orange-50 q-pa-xs rounded">
        ⚠ The run had read untrusted content (web pages, HTTP responses) before this call:
        check that the arguments are what you expect.
      </div>
      <div class="font-mono text-sm bg-slate-50 q-pa-sm rounded"
           style="white-space: pre-wrap; word-break: break-all">{{ card.args }}</div>
      <div v-if="card.outcome !== null && card.outcome !== undefined"
           class="text-sm font-medium" style="white-space: pre-line">{{ card.outcome }}</div>
      <div v-else class="row items-center q-gutter-sm">
        <q-btn v-for="b in buttons" :key="b.decision" no-caps :label="b.label" :icon="b.icon"
               :color="b.color" :outline="b.decision !== 'approve'" :disable="locked"
               :loading="Boolean(card.busy)" :data-decision="b.decision"
               @click="$emit(b.decision)" />
        <span v-if="card.refusal" class="text-xs text-grey-7">
          You cannot decide this: {{ card.refusal }}
        </span>
      </div>
    </q-card>
  `,
};
