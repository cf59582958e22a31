/** The shapes world's language: captions, chat requests, the canonical plan, edit dialogues, revisions. */
export { captionsFor } from "./captions.ts";
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
