/**
 * Constrained decoding: a transformers.js logits processor that lets the LLM emit only continuations the
 * plan grammar accepts, so every finished output parses. It works at the character level over each
 * token's text, so it fits both a word-level tokenizer (one grammar word per token) and the byte-level BPE
 * of other LLMs (a word spread over several tokens, or several words in one token).
 */
import { LogitsProcessor, type Tensor } from "@huggingface/transformers";
import {
  createPlanGrammar,
  type PlanGrammar,
  type PlanRestrictions,
} from "../evals/language/plan-grammar.ts";

/** Grammar state after the complete words of the generated text, plus the word still being written. */
interface DecodeState {
  grammar: PlanGrammar;
  partial: string;
}

/** A piece that is one word after a space: " star" → "star". */
const WHOLE_WORD = /^ ([^\s]+)$/;

const isSpace = (ch: string) => ch === " " || ch === "\n" || ch === "\t" || ch === "\r";

/**
 * Feeds `piece` into a copy of the state; null if some word it completes or starts is not allowed. A word
 * left open at the end must be allowed as it is, or — when the vocabulary has pieces that continue a word
 * (BPE) — be the start of an allowed word.
 */
function feed(state: DecodeState, piece: string, continuable: boolean): DecodeState | null {
  let grammar = state.grammar;
  let copied = false;
  let word = state.partial;
  for (const ch of piece) {
    if (!isSpace(ch)) {
      word += ch;
      continue;
    }
    if (!word) continue;
    if (!grammar.allowed().has(word)) return null;
    if (!copied) {
      grammar = grammar.clone();
      copied = true;
    }
    grammar.advance(word);
    word = "";
  }
  if (word) {
    const allowed = grammar.allowed();
    if (allowed.has(word)) return { grammar, partial: word };
    if (!continuable) return null;
    for (const candidate of allowed) if (candidate.startsWith(word)) return { grammar, partial: word };
    return null;
  } else if (grammar.done) {
    return null; // after the plan only the end of sequence may come
  }
  return { grammar, partial: word };
}

/** The grammar once the word in progress is closed (null if that word is not allowed). */
function afterWord(state: DecodeState): PlanGrammar | null {
  if (!state.partial) return state.grammar;
  if (!state.grammar.allowed().has(state.partial)) return null;
  const grammar = state.grammar.clone();
  grammar.advance(state.partial);
  return grammar;
}

export class PlanGrammarProcessor extends LogitsProcessor {
  private state: DecodeState;
  private consumed = 0;
  /** Whether some token continues a word instead of starting one (BPE yes, word-level no). */
  private readonly continuable: boolean;

  /**
   * @param pieces the text each token id appends to a sequence (see `tokenPieces`)
   * @param eosIds ids that end generation; allowed only once the plan is complete
   * @param promptLength tokens before the plan (the processor sees prompt + generated ids)
   * @param restrictions what the plan may say beyond the grammar (grounded decoding, planner/grounding.ts)
   */
  constructor(
    private readonly pieces: readonly string[],
    private readonly eosIds: readonly number[],
    private readonly promptLength: number,
    restrictions?: PlanRestrictions,
  ) {
    super();
    this.state = { grammar: createPlanGrammar(restrictions), partial: "" };
    this.continuable = pieces.some((piece) => piece.length > 0 && !isSpace(piece[0]!));
  }

  _call(inputIds: bigint[][], logits: Tensor): Tensor {
    const generated = inputIds[0]!;
    for (; this.consumed < generated.length - this.promptLength; this.consumed++) {
      const id = Number(generated[this.promptLength + this.consumed]);
      const next = feed(this.state, this.pieces[id] ?? "", this.continuable);
      // The processor itself chose this token, so it is always acceptable; guard anyway.
      if (next) this.state = next;
    }
    const row = (logits as unknown as Tensor[])[0]!.data as Float32Array;
    // The text so far is a complete plan when closing its last word closes the grammar.
    const closed = afterWord(this.state);
    const done = closed?.done ?? false;
    // A whole-word piece (" star": every token of a word-level vocabulary) first closes the word in progress,
    // then is allowed exactly when the grammar allows its word next: one state per step, not one per token.
    const next = this.continuable ? null : closed?.allowed();
    for (let id = 0; id < row.length; id++) {
      if (row[id] === Number.NEGATIVE_INFINITY) continue;
      const piece = this.pieces[id] ?? "";
      const word = next && WHOLE_WORD.exec(piece)?.[1];
      const allowed = this.eosIds.includes(id)
        ? done
        : word
          ? next!.has(word)
          : feed(this.state, piece, this.continuable) !== null;
      if (!allowed) row[id] = Number.NEGATIVE_INFINITY;
    }
    return logits;
  }
}
