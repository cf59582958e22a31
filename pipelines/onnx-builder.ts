/**
 * A minimal ONNX writer: encodes ModelProto protobuf by hand for small graphs built at run time — the bench's
 * MatMul peak, and tests' graphs with the input/output conventions of other exporters (int32 input_ids,
 * rank-0 int64 timestep, float16 tensors, fixed batch, `latent_sample`) run through the real onnxruntime-node.
 */

type Bytes = number[];

function varint(value: number): Bytes {
  const out: Bytes = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return out;
}

const key = (field: number, wire: number) => varint(field * 8 + wire);
const vField = (field: number, value: number): Bytes => [...key(field, 0), ...varint(value)];
const bField = (field: number, bytes: Bytes | Uint8Array): Bytes => [
  ...key(field, 2),
  ...varint(bytes.length),
  ...bytes,
];
const sField = (field: number, text: string) => bField(field, [...new TextEncoder().encode(text)]);

export const DT = { float: 1, int32: 6, int64: 7, float16: 10 } as const;
export type Dim = number | string;

export interface ValueInfo {
  name: string;
  type: number;
  shape: Dim[];
}

function valueInfo(v: ValueInfo): Bytes {
  const dims = v.shape.map((d) => bField(1, typeof d === "number" ? vField(1, d) : sField(2, d)));
  const shape = bField(2, dims.flat());
  const tensorType = bField(1, [...vField(1, v.type), ...shape]);
  return [...sField(1, v.name), ...bField(2, tensorType)];
}

export interface Initializer {
  name: string;
  dims: number[];
  /** float32 values (type float) or integers (type int64). */
  values: number[];
  type?: number;
}

function tensor(t: Initializer): Bytes {
  const type = t.type ?? DT.float;
  const raw =
    type === DT.int64
      ? new Uint8Array(BigInt64Array.from(t.values, (v) => BigInt(v)).buffer)
      : new Uint8Array(Float32Array.from(t.values).buffer);
  return [
    ...t.dims.flatMap((d) => vField(1, d)),
    ...vField(2, type),
    ...sField(8, t.name),
    ...bField(9, raw),
  ];
}

export type Attr = { name: string } & ({ i: number } | { ints: number[] } | { f: number });

function attribute(a: Attr): Bytes {
  const out = [...sField(1, a.name)];
  if ("i" in a) out.push(...vField(3, a.i), ...vField(20, 2));
  else if ("f" in a) {
    const b = new Uint8Array(Float32Array.of(a.f).buffer);
    out.push(...key(2, 5), ...b, ...vField(20, 1));
  } else out.push(...a.ints.flatMap((v) => vField(8, v)), ...vField(20, 7));
  return out;
}

export interface Node {
  op: string;
  inputs: string[];
  outputs: string[];
  attrs?: Attr[];
}

function node(n: Node, index: number): Bytes {
  return [
    ...n.inputs.flatMap((s) => sField(1, s)),
    ...n.outputs.flatMap((s) => sField(2, s)),
    ...sField(3, `${n.op}_${index}`),
    ...sField(4, n.op),
    ...(n.attrs ?? []).flatMap((a) => bField(5, attribute(a))),
  ];
}

export interface Graph {
  nodes: Node[];
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  initializers?: Initializer[];
}

/** Serialises a graph as an ONNX model (IR 8, default opset 13). */
export function buildModel(graph: Graph, name = "test"): Uint8Array {
  const g = [
    ...graph.nodes.flatMap((n, i) => bField(1, node(n, i))),
    ...sField(2, name),
    ...(graph.initializers ?? []).flatMap((t) => bField(5, tensor(t))),
    ...graph.inputs.flatMap((v) => bField(11, valueInfo(v))),
    ...graph.outputs.flatMap((v) => bField(12, valueInfo(v))),
  ];
  const model = [...vField(1, 8), ...sField(2, "atelier"), ...bField(7, g), ...bField(8, vField(2, 13))];
  return Uint8Array.from(model);
}
