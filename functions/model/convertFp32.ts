/**
 * The `fp16-to-fp32` transform of the registry: rewrites an fp16 ONNX model as
 * fp32. The fetch (weights.ts) runs it, also in `gcp-build`, so onnx-proto is a
 * production dependency. A module of its own only so that weights.ts can load
 * it, and onnx-proto with it, when a fetch derives a model, never in the server.
 *
 * The fp16 IS-Net was made with its inputs and outputs kept fp32 and Casts at
 * the edges; onnxruntime's x86 CPU provider has few fp16 kernels, so it
 * computes most of the graph in fp32 anyway, behind extra Casts and fp16
 * copies of the activations. Widening every fp16 tensor (weights, constants,
 * declared types) and retargeting Casts to fp32 turns those Casts into no-ops
 * the optimiser drops: the same masks, less time and less peak memory
 * (bench/NOTES.md). The output is deterministic for a given onnx-proto and
 * protobufjs, which is what lets the registry pin its checksum.
 */
import { onnx } from 'onnx-proto';

const FLOAT: number = onnx.TensorProto.DataType.FLOAT;
const FLOAT16: number = onnx.TensorProto.DataType.FLOAT16;

/** IEEE 754 binary16 → number, including subnormals, infinities and NaN. */
export function halfToFloat(half: number): number {
  const sign = half & 0x8000 ? -1 : 1;
  const exponent = (half >> 10) & 0x1f;
  const fraction = half & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 0x1f) return fraction === 0 ? sign * Infinity : Number.NaN;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

export interface ConversionCounts {
  tensors: number;
  values: number;
  casts: number;
  declaredTypes: number;
}

/** fp16 values live in raw_data (little-endian) or, one per element, in int32_data. */
function widenTensor(tensor: onnx.ITensorProto, counts: ConversionCounts): void {
  if (tensor.dataType !== FLOAT16) return;
  if (tensor.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) throw new Error(`tensor ${tensor.name} has external data`);
  let halves: ArrayLike<number>;
  if (tensor.rawData && tensor.rawData.length > 0) {
    // Copied to an aligned buffer; the host is little-endian like the format (x86, ARM).
    halves = new Uint16Array(new Uint8Array(tensor.rawData).buffer);
  } else {
    halves = tensor.int32Data ?? [];
  }
  const floats = new Float32Array(halves.length);
  for (let index = 0; index < halves.length; index += 1) floats[index] = halfToFloat(halves[index]!);
  tensor.dataType = FLOAT;
  tensor.rawData = new Uint8Array(floats.buffer);
  tensor.int32Data = [];
  counts.tensors += 1;
  counts.values += floats.length;
}

function widenDeclaredType(value: onnx.IValueInfoProto, counts: ConversionCounts): void {
  const tensorType = value.type?.tensorType;
  if (tensorType?.elemType === FLOAT16) {
    tensorType.elemType = FLOAT;
    counts.declaredTypes += 1;
  }
}

function widenGraph(graph: onnx.IGraphProto, counts: ConversionCounts): void {
  for (const tensor of graph.initializer ?? []) widenTensor(tensor, counts);
  if ((graph.sparseInitializer ?? []).length > 0) throw new Error('sparse initializers are not handled');
  for (const value of [...(graph.input ?? []), ...(graph.output ?? []), ...(graph.valueInfo ?? [])]) widenDeclaredType(value, counts);
  for (const node of graph.node ?? []) {
    for (const attribute of node.attribute ?? []) {
      if (attribute.t) widenTensor(attribute.t, counts);
      for (const tensor of attribute.tensors ?? []) widenTensor(tensor, counts);
      if (attribute.g) widenGraph(attribute.g, counts);
      for (const subgraph of attribute.graphs ?? []) widenGraph(subgraph, counts);
      if (node.opType === 'Cast' && attribute.name === 'to' && Number(attribute.i) === FLOAT16) {
        attribute.i = FLOAT;
        counts.casts += 1;
      }
    }
  }
}

export function convertToFp32(model: Uint8Array): { bytes: Uint8Array; counts: ConversionCounts } {
  const decoded = onnx.ModelProto.decode(model);
  if (!decoded.graph) throw new Error('the model has no graph');
  const counts: ConversionCounts = { tensors: 0, values: 0, casts: 0, declaredTypes: 0 };
  widenGraph(decoded.graph, counts);
  // Its old file name, kept: these bytes are in the output, whose sha256 the registry pins.
  decoded.producerName = `${decoded.producerName} + detourage convert-fp32`;
  return { bytes: onnx.ModelProto.encode(decoded).finish(), counts };
}
