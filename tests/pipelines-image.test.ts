/** Image I/O additions: base64 PNG, RGBA flattening, masks and their resampling. */
import { PNG } from "pngjs";
import { describe, expect, it } from "vitest";
import {
  createImage,
  decodeBase64Png,
  encodeBase64Png,
  flattenAlpha,
  maskFromImage,
  resizeMask,
} from "../pipelines/image.ts";
import { AtelierError } from "../src/errors.ts";

describe("base64 PNG", () => {
  const image = createImage(3, 2);
  image.data.set([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30, 40, 50, 60, 70, 80, 90]);

  it("round-trips raw base64 and data URLs", () => {
    const b64 = encodeBase64Png(image);
    expect([...decodeBase64Png(b64).image.data]).toEqual([...image.data]);
    expect([...decodeBase64Png(`data:image/png;base64,${b64}`).image.data]).toEqual([...image.data]);
  });

  it("reads the alpha channel of RGBA PNGs and flattens over white", () => {
    const png = new PNG({ width: 1, height: 1 });
    png.data = Buffer.from([100, 0, 200, 128]);
    const { image: rgb, alpha } = decodeBase64Png(PNG.sync.write(png).toString("base64"));
    expect([...alpha]).toEqual([128]);
    const a = 128 / 255;
    expect([...flattenAlpha(rgb, alpha).data]).toEqual([
      Math.round(100 * a + 255 * (1 - a)),
      Math.round(255 * (1 - a)),
      Math.round(200 * a + 255 * (1 - a)),
    ]);
  });

  it("names the field for JPEGs, other data URLs and garbage", () => {
    const jpeg = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 0]).toString("base64");
    const err = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        expect(e).toBeInstanceOf(AtelierError);
        return e as AtelierError;
      }
      throw new Error("expected an error");
    };
    expect(err(() => decodeBase64Png(jpeg, "init_image")).message).toMatch(/init_image: is a JPEG/);
    expect(err(() => decodeBase64Png("data:image/jpeg;base64,AAAA", "mask")).param).toBe("mask");
    expect(err(() => decodeBase64Png("!!!")).param).toBe("image");
  });
});

describe("masks", () => {
  it("takes luma (white = repaint) or transparency", () => {
    const image = createImage(2, 1);
    image.data.set([255, 255, 255, 0, 0, 0]);
    expect([...maskFromImage(image).data]).toEqual([255, 0]);
    expect([...maskFromImage(image, Uint8Array.of(255, 0), true).data]).toEqual([0, 255]);
  });

  it("resizes by exact area coverage", () => {
    // 4×4 mask with the top-left 2×2 and one more pixel set.
    const data = new Uint8Array(16);
    data.set([255, 255], 0);
    data.set([255, 255], 4);
    data[10] = 255;
    const mask = { width: 4, height: 4, data };
    expect([...resizeMask(mask, 2, 2)]).toEqual([1, 0, 0, 0.25]);
    expect([...resizeMask(mask, 1, 1)]).toEqual([5 / 16]);
    // 3 → 2 columns: output cell 0 covers input columns 0 and half of 1.
    const row = { width: 3, height: 1, data: Uint8Array.of(255, 0, 255) };
    expect([...resizeMask(row, 2, 1)].map((v) => Math.round(v * 1000) / 1000)).toEqual([0.667, 0.667]);
    expect([...resizeMask({ width: 1, height: 1, data: Uint8Array.of(255) }, 2, 2)]).toEqual([1, 1, 1, 1]);
  });
});
