/** The shapes world's language: captions, chat requests, the canonical plan, edit dialogues, revisions. */
export { captionsFor } from "./captions.ts";
export {
  applyEdit,
  type DialogueOptions,
  type DialogueTurn,
  EDIT_FRAMES,
  EDIT_KINDS,
  type Edit,
  type EditKind,
  editDialogue,
  editText,
  isUsableScene,
  proposeEdit,
  referencesTo,
} from "./edits.ts";
export { layoutWords, parsePlan, printPlan } from "./plan.ts";
export {
  createPlanGrammar,
  PLAN_SPECIAL_TOKENS,
  type PlanFields,
  PlanGrammar,
  planVocabulary,
  runPlanGrammar,
  tokenizePlan,
} from "./plan-grammar.ts";
export {
  type EvalPrompt,
  ExpectSchema,
  PROMPT_CATEGORIES,
  type PromptExpect,
  PromptSchema,
  parsePromptLine,
  readPromptFile,
} from "./prompt-file.ts";
export { FAMILIES, type Family, REQUEST_DEFAULTS, REQUEST_FRAMES, requestFor } from "./requests.ts";
export {
  agreement,
  critiqueText,
  diffScenes,
  FAULTS,
  type Fault,
  FINDING_FIELDS,
  type Finding,
  type FindingField,
  matchGroups,
  type RevisionExample,
  revisionExample,
  type SceneDiff,
} from "./revision.ts";
