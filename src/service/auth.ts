/**
 * Optional API keys (ATELIER_API_KEYS, comma-separated) sent as `Authorization: Bearer <key>`. Each key
 * is an owner: what it creates is visible only to it. Keys are kept as SHA-256 digests and compared in
 * constant time; the owner id is a digest prefix, so the database never holds a key. Without keys every
 * request belongs to the anonymous owner "".
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { AtelierError } from "../errors.ts";

const digest = (key: string) => createHash("sha256").update(key).digest();

export class ApiKeys {
  private readonly digests: Buffer[];

  constructor(keys: string[]) {
    this.digests = keys
      .map((k) => k.trim())
      .filter((k) => k.length > 0)
      .map(digest);
  }

  static fromEnv(value: string | undefined): ApiKeys {
    return new ApiKeys((value ?? "").split(","));
  }

  get enabled(): boolean {
    return this.digests.length > 0;
  }

  /**
   * The owner for an Authorization header: "" without keys, the key's owner id for a known key, null when
   * keys are required and none was sent. A wrong key is a 401.
   */
  owner(header: string | undefined): string | null {
    if (!this.enabled) return "";
    if (!header) return null;
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match) throw unauthorized("the Authorization header must be `Bearer <key>`", "invalid_api_key");
    const given = digest(match[1]!);
    if (!this.digests.some((d) => timingSafeEqual(d, given)))
      throw unauthorized("incorrect API key provided", "invalid_api_key");
    return `key_${given.toString("hex").slice(0, 16)}`;
  }
}

export function unauthorized(message: string, code: string): AtelierError {
  return new AtelierError(`authorization: ${message}`, { status: 401, code, param: "authorization" });
}
