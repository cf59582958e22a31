/**
 * Sampling defaults of the embedded model, shared by the CLI, the HTTP API and the eval harness so that a
 * figure measured with the defaults is what a user gets. Tuned on the evaluator (see BENCHMARKS.md). The
 * sampler is not here: it is the model folder's own (its scheduler_config.json's class), as in diffusers.
 */
export const DEFAULTS = {
  steps: 20,
  guidance: 2,
} as const;
