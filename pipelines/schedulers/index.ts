/**
 * Scheduler registry: `createScheduler(name, config)` with diffusers' `scheduler_config.json` keys, and
 * `loadSchedulerConfig(path)` for a model folder's scheduler/ config.
 */
import { readFile } from "node:fs/promises";
import { AtelierError, invalid } from "../../src/errors.ts";
import type { Scheduler, SchedulerName } from "./common.ts";
import { DDIMScheduler } from "./ddim.ts";
import { DDPMScheduler } from "./ddpm.ts";
import { DPMSolverMultistepScheduler } from "./dpmpp_2m.ts";
import { EulerScheduler } from "./euler.ts";
import { EulerAncestralScheduler } from "./euler_ancestral.ts";
import { LCMScheduler } from "./lcm.ts";

export type { PredictionType, Scheduler, SchedulerName, StepOptions, StepResult } from "./common.ts";

const FACTORIES: Record<SchedulerName, (config: Record<string, unknown>) => Scheduler> = {
  ddpm: (c) => new DDPMScheduler(c),
  ddim: (c) => new DDIMScheduler(c),
  euler: (c) => new EulerScheduler(c),
  euler_ancestral: (c) => new EulerAncestralScheduler(c),
  dpmpp_2m: (c) => new DPMSolverMultistepScheduler(c),
  lcm: (c) => new LCMScheduler(c),
};

export const SCHEDULER_NAMES = Object.keys(FACTORIES) as SchedulerName[];

/** diffusers class names (`_class_name` of a scheduler_config.json) of the schedulers implemented here. */
const CLASS_NAMES: Record<string, SchedulerName> = {
  DDPMScheduler: "ddpm",
  DDIMScheduler: "ddim",
  EulerDiscreteScheduler: "euler",
  EulerAncestralDiscreteScheduler: "euler_ancestral",
  DPMSolverMultistepScheduler: "dpmpp_2m",
  LCMScheduler: "lcm",
};

export function isSchedulerName(name: unknown): name is SchedulerName {
  return typeof name === "string" && Object.hasOwn(FACTORIES, name);
}

/** The scheduler a diffusers class name stands for, or null (e.g. PNDMScheduler, not implemented). */
export function schedulerNameForClass(className: unknown): SchedulerName | null {
  return typeof className === "string" ? (CLASS_NAMES[className] ?? null) : null;
}

/**
 * A scheduler by name, configured with diffusers' scheduler_config keys (missing keys take that
 * scheduler's diffusers defaults; keys meant for other scheduler classes are ignored; unknown keys and
 * unsupported values are errors naming the key).
 */
export function createScheduler(name: string, config: Record<string, unknown> = {}): Scheduler {
  if (!isSchedulerName(name))
    throw invalid("scheduler", `unknown scheduler "${name}"; one of ${SCHEDULER_NAMES.join(", ")}`);
  return FACTORIES[name](config);
}

/** Reads a diffusers scheduler_config.json (a JSON object; validated when a scheduler is created from it). */
export async function loadSchedulerConfig(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new AtelierError(`scheduler config not readable: ${path} (${(error as Error).message})`, {
      status: 500,
      code: "model_invalid",
      param: "scheduler_config",
    });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw invalid("scheduler_config", `${path} is not valid JSON (${(error as Error).message})`);
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed))
    throw invalid("scheduler_config", `${path} must hold a JSON object`);
  return parsed as Record<string, unknown>;
}
