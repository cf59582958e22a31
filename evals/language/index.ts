/** The shapes world's language: captions, chat requests, the canonical plan, edit dialogues, revisions. */
export { captionsFor } from "./captions.ts";
export { printPlan } from "./plan.ts";
