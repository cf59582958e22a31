/** Plugs Atelier's generators into the eval harness's modes. */
import { registerGenerator } from "../../evals/harness.ts";
import { createAgentGenerator } from "./agent.ts";
import { createNativeGenerator } from "./native.ts";
import { createOracleVaeGenerator } from "./oracle-vae.ts";
import { createPlanGenerator } from "./plan.ts";
import { createPlanTextGenerator } from "./plan-text.ts";

export function registerGenerators(): void {
  registerGenerator("oracle-vae", createOracleVaeGenerator);
  registerGenerator("native", createNativeGenerator);
  registerGenerator("plan-text", createPlanTextGenerator);
  registerGenerator("plan", createPlanGenerator);
  registerGenerator("agent", createAgentGenerator);
}
