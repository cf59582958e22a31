/**
 * Hidden-state tap for any decoder graph. ONNX Runtime can only fetch tensors that are graph outputs, and
 * exports such as Qwen2.5 or SmolLM2 declare only logits and the KV cache. This edits the ONNX protobuf to
 * declare the residual stream of chosen layers as extra outputs `hidden_states.{i}` (Hugging Face's
 * numbering: 0 = embeddings, i = after layer i−1, the last = after the final norm), and caches the tapped
 * copy beside the original so external-data paths keep resolving.
 *
 * The edit works on the protobuf wire format directly: the graph's bytes are kept as they are and new
 * `output` entries are appended (protobuf allows repeated fields anywhere in a message), so nothing the
 * editor does not understand is lost, whatever the opset or model size.
 */
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { AtelierError } from "../src/errors.ts";

const MODEL_GRAPH = 7;
const GRAPH_NODE = 1;
const GRAPH_OUTPUT = 12;
const NODE_INPUT = 1;
const NODE_OUTPUT = 2;
const NODE_NAME = 3;
const FLOAT = 1;

interface Field {
  field: number;
  wire: number;
  /** Where the tag starts and where the value ends (the whole field). */
  start: number;
  end: number;
  /** The payload of a length-delimited field. */
  valueStart: number;
}

function readVarint(buf: Uint8Array, pos: number): [number, number] {
  let value = 0;
  let scale = 1;
  for (;;) {
    const byte = buf[pos++]!;
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) return [value, pos];
    scale *= 128;
  }
}

function* fields(buf: Uint8Array, start: number, end: number): Generator<Field> {
  let pos = start;
  while (pos < end) {
    const fieldStart = pos;
    const [tag, afterTag] = readVarint(buf, pos);
    const wire = tag & 7;
    const field = Math.floor(tag / 8);
    pos = afterTag;
    let valueStart = pos;
    if (wire === 0) pos = readVarint(buf, pos)[1];
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      const [length, afterLength] = readVarint(buf, pos);
      valueStart = afterLength;
      pos = afterLength + length;
    } else
      throw new AtelierError(`unsupported protobuf wire type ${wire}`, { status: 500, code: "onnx_parse" });
    yield { field, wire, start: fieldStart, end: pos, valueStart };
  }
}

const text = new TextDecoder();
const bytes = (s: string) => new TextEncoder().encode(s);

function varint(value: number): number[] {
  const out: number[] = [];
  while (value >= 0x80) {
    out.push((value % 128) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return out;
}

function lengthDelimited(field: number, payload: Uint8Array | number[]): number[] {
  return [...varint(field * 8 + 2), ...varint(payload.length), ...payload];
}

/** ValueInfoProto for a float tensor [batch_size, sequence_length, hidden]. */
function floatOutput(name: string, hidden: number): number[] {
  const dims = [
    lengthDelimited(1, lengthDelimited(2, bytes("batch_size"))),
    lengthDelimited(1, lengthDelimited(2, bytes("sequence_length"))),
    lengthDelimited(1, [...varint(1 * 8), ...varint(hidden)]),
  ].flat();
  const tensorType = [...varint(1 * 8), ...varint(FLOAT), ...lengthDelimited(2, dims)];
  const type = lengthDelimited(1, tensorType);
  return [...lengthDelimited(1, bytes(name)), ...lengthDelimited(2, type)];
}

interface Node {
  name: string;
  inputs: string[];
  outputs: string[];
}

function graphRange(model: Uint8Array): Field {
  for (const f of fields(model, 0, model.length)) if (f.field === MODEL_GRAPH && f.wire === 2) return f;
  throw new AtelierError("not an ONNX model: no graph", { status: 400, code: "onnx_parse", param: "model" });
}

function readGraph(model: Uint8Array, graph: Field): { nodes: Node[]; outputs: string[] } {
  const nodes: Node[] = [];
  const outputs: string[] = [];
  for (const f of fields(model, graph.valueStart, graph.end)) {
    if (f.wire !== 2) continue;
    if (f.field === GRAPH_NODE) {
      const node: Node = { name: "", inputs: [], outputs: [] };
      for (const g of fields(model, f.valueStart, f.end)) {
        if (g.wire !== 2) continue;
        const value = text.decode(model.subarray(g.valueStart, g.end));
        if (g.field === NODE_INPUT) node.inputs.push(value);
        else if (g.field === NODE_OUTPUT) node.outputs.push(value);
        else if (g.field === NODE_NAME) node.name = value;
      }
      nodes.push(node);
    } else if (f.field === GRAPH_OUTPUT) {
      for (const g of fields(model, f.valueStart, f.end)) {
        if (g.field === 1 && g.wire === 2) outputs.push(text.decode(model.subarray(g.valueStart, g.end)));
      }
    }
  }
  return { nodes, outputs };
}

/** Tensors made inside a name scope and read by nodes outside it: a block's output. */
function scopeOutputs(nodes: Node[], scope: string): string[] {
  const inside = new Set<string>();
  for (const node of nodes) if (node.name.startsWith(scope)) for (const out of node.outputs) inside.add(out);
  const read = new Set<string>();
  for (const node of nodes) {
    if (node.name.startsWith(scope)) continue;
    for (const input of node.inputs) if (inside.has(input)) read.add(input);
  }
  return [...read];
}

/** Finds the residual-stream tensor for each hidden-state index of a Hugging Face–style decoder graph. */
export function findHiddenStateTensors(nodes: Node[]): string[] {
  const layerPattern = /^(.*\/layers\.)(\d+)\//;
  let prefix = "";
  let layers = 0;
  for (const node of nodes) {
    const match = layerPattern.exec(node.name);
    if (match) {
      prefix = match[1]!;
      layers = Math.max(layers, Number(match[2]) + 1);
    }
  }
  if (layers === 0) {
    throw new AtelierError("cannot find decoder layers (node names like '/model/layers.0/…') in the graph", {
      status: 400,
      code: "onnx_unknown_layout",
      param: "model",
    });
  }
  const root = prefix.slice(0, -"layers.".length);
  const single = (scope: string): string => {
    const found = scopeOutputs(nodes, scope);
    if (found.length !== 1) {
      throw new AtelierError(`scope ${scope} has ${found.length} outputs read elsewhere; expected one`, {
        status: 400,
        code: "onnx_unknown_layout",
        param: "model",
      });
    }
    return found[0]!;
  };
  const tensors = [single(`${root}embed_tokens/`)];
  for (let i = 0; i < layers - 1; i++) tensors.push(single(`${prefix}${i}/`));
  tensors.push(single(`${root}norm/`));
  return tensors;
}

/** Returns the model bytes with `hidden_states.{i}` outputs added for `layers` (already-declared ones skipped). */
export function tapModel(model: Uint8Array, layers: number[], hiddenSize: number): Uint8Array {
  const graph = graphRange(model);
  const { nodes, outputs } = readGraph(model, graph);
  const tensors = findHiddenStateTensors(nodes);
  const additions: number[] = [];
  const renames: number[] = [];
  for (const layer of layers) {
    const name = `hidden_states.${layer}`;
    if (outputs.includes(name)) continue;
    const tensor = tensors[layer];
    if (tensor === undefined) {
      throw new AtelierError(`layer ${layer} does not exist (0..${tensors.length - 1})`, {
        status: 400,
        code: "invalid_value",
        param: "layers",
      });
    }
    // An Identity node gives the tapped tensor its Hugging Face output name.
    const node = [
      ...lengthDelimited(NODE_INPUT, bytes(tensor)),
      ...lengthDelimited(NODE_OUTPUT, bytes(name)),
      ...lengthDelimited(NODE_NAME, bytes(`/tap/${name}`)),
      ...lengthDelimited(4, bytes("Identity")),
    ];
    renames.push(...lengthDelimited(GRAPH_NODE, node));
    additions.push(...lengthDelimited(GRAPH_OUTPUT, floatOutput(name, hiddenSize)));
  }
  const graphBody = model.subarray(graph.valueStart, graph.end);
  const newGraph = new Uint8Array(graphBody.length + renames.length + additions.length);
  newGraph.set(graphBody, 0);
  newGraph.set(renames, graphBody.length);
  newGraph.set(additions, graphBody.length + renames.length);
  const header = Uint8Array.from([...varint(MODEL_GRAPH * 8 + 2), ...varint(newGraph.length)]);
  const out = new Uint8Array(graph.start + header.length + newGraph.length + (model.length - graph.end));
  out.set(model.subarray(0, graph.start), 0);
  out.set(header, graph.start);
  out.set(newGraph, graph.start + header.length);
  out.set(model.subarray(graph.end), graph.start + header.length + newGraph.length);
  return out;
}

/**
 * Writes (once) `onnx/model_hidden_states.onnx` beside `onnx/model.onnx` with every layer tapped, and
 * returns its file name for `loadDecoderLLM(dir, {file})`. A copy newer than the original is reused.
 */
export function ensureTappedModel(dir: string, numLayers: number, hiddenSize: number): string {
  const original = join(dir, "onnx", "model.onnx");
  const tapped = join(dirname(original), "model_hidden_states.onnx");
  if (!existsSync(tapped) || statSync(tapped).mtimeMs < statSync(original).mtimeMs) {
    const layers = Array.from({ length: numLayers + 1 }, (_, i) => i);
    writeFileSync(tapped, tapModel(readFileSync(original), layers, hiddenSize));
  }
  return "model_hidden_states.onnx";
}
