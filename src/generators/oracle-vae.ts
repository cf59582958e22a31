/**
 * The VAE's ceiling: the oracle's rendering of each prompt through the frozen VAE (encode → posterior mean →
 * decode). Every other mode ends in this decoder, so no generator on this model can score above it; the gap
 * between this mode and `oracle` is what the autoencoder alone loses (blurred star points, flat fills read as
 * watercolor).
 */
import { join } from "node:path";
import { type Generator, type GeneratorOptions, oracleGenerator } from "../../evals/harness.ts";
import { imagesToPixels, pixelsToImages } from "../../pipelines/denoise.ts";
import { loadDiffusionModel, type NoiseSource } from "../../pipelines/index.ts";

/** Zero noise: the posterior sample becomes the posterior mean, so the round trip does not depend on a seed. */
const posteriorMean: NoiseSource = {
  fillNormal(out, offset = 0, length = out.length - offset) {
    out.fill(0, offset, offset + length);
  },
};

export async function createOracleVaeGenerator(options: GeneratorOptions): Promise<Generator> {
  const model = await loadDiffusionModel(join(options.models ?? "models", "ldm"));
  const { width, height, vaeScaleFactor: f } = model;
  const roundTrip = async (request: Parameters<Generator["generate"]>[0], seed: number) => {
    const rendered = await oracleGenerator.generate(request, seed);
    const latents = await model.encodeImages(imagesToPixels([rendered]), 1, height, width, posteriorMean);
    return pixelsToImages(await model.decodeLatents(latents, 1, height / f, width / f), 1, width, height)[0]!;
  };
  return { generate: roundTrip, close: () => model.dispose() };
}
