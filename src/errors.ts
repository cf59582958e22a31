/**
 * The one error type of Atelier: carries an HTTP status, a machine-readable code and the offending
 * field (`param`), so the HTTP layer, the CLI and library callers all report bad input the same way.
 */
export class AtelierError extends Error {
  readonly status: number;
  readonly code: string;
  readonly param: string | null;

  constructor(message: string, options: { status?: number; code?: string; param?: string | null } = {}) {
    super(message);
    this.name = "AtelierError";
    this.status = options.status ?? 400;
    this.code = options.code ?? "invalid_request";
    this.param = options.param ?? null;
  }
}

/** Bad input: a 400 naming the field. */
export function invalid(param: string, message: string): AtelierError {
  return new AtelierError(`${param}: ${message}`, { status: 400, code: "invalid_value", param });
}
