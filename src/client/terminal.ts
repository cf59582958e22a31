/**
 * Progress of a generation on a terminal: on a TTY one line redrawn in place (a bar over the denoising
 * steps, and the current node); piped, one plain line per event, which scripts and logs can read.
 */
import type { Writable } from "node:stream";

/** The engine events the CLI shows (the service's EngineEvent, plus what a stream may add). */
export interface ShownEvent {
  type: string;
  round?: number;
  step?: number;
  steps?: number;
  plan?: string;
  agreement?: number;
  critique?: string;
}

const BAR = 24;

export class ProgressView {
  private drawn = false;

  constructor(
    private readonly out: Writable & { isTTY?: boolean; columns?: number },
    private readonly tty = out.isTTY === true,
  ) {}

  private line(text: string): void {
    this.clear();
    this.out.write(`${text}\n`);
  }

  private draw(text: string): void {
    const width = Math.max(20, (this.out.columns || 80) - 1);
    this.out.write(`\r\x1b[2K${text.slice(0, width)}`);
    this.drawn = true;
  }

  /** Removes the in-place line (before other output, and at the end). */
  clear(): void {
    if (this.drawn) this.out.write("\r\x1b[2K");
    this.drawn = false;
  }

  show(event: ShownEvent): void {
    const round = `round ${event.round ?? 1}`;
    switch (event.type) {
      case "planning":
      case "describing":
        if (this.tty) this.draw(`${round} · ${event.type}…`);
        else this.line(`${round} ${event.type}`);
        return;
      case "plan":
      case "revised":
        this.line(`${round} ${event.type === "plan" ? "plan" : "revised plan"}: ${event.plan}`);
        return;
      case "step": {
        const { step = 0, steps = 1 } = event;
        if (!this.tty) {
          this.line(`${round} step ${step}/${steps}`);
          return;
        }
        const filled = Math.round((BAR * step) / steps);
        this.draw(`${round} · denoising ${"█".repeat(filled)}${"░".repeat(BAR - filled)} ${step}/${steps}`);
        return;
      }
      case "critique":
        this.line(`${round} agreement ${event.agreement?.toFixed(2)}: ${event.critique}`);
        return;
      default:
        return;
    }
  }
}
