/**
 * Rewrites the fp16 IS-Net as fp32, to measure precision as a lever.
 *
 *   node dist/bench/convert-fp32.js [source.onnx] [target.onnx]
 *
 * Defaults: models/isnet-fp16.onnx → models/isnet-fp16.fp32.onnx (gitignored
 * like every models/*.onnx). The fp16 file was made with its inputs and outputs
 * kept fp32 and Casts at the edges; onnxruntime's x86 CPU provider has few fp16
 * kernels, so it computes most of the graph in fp32 anyway, behind extra Casts.
 * Widening every fp16 tensor (weights, constants, declared types) and
 * retargeting Casts to fp32 turns those Casts into no-ops the optimiser drops.
 */
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { onnx } from 'onnx-proto';
import { DEFAULT_MODELS_DIR, PROJECT_ROOT } from '../functions/model/registry';

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
  decoded.producerName = `${decoded.producerName} + detourage convert-fp32`;
  return { bytes: onnx.ModelProto.encode(decoded).finish(), counts };
}

export const FP32_MODEL_FILE = path.join(DEFAULT_MODELS_DIR, 'isnet-fp16.fp32.onnx');

/**
 * A models directory in which isnet-fp16.onnx is the fp32 rewrite, so the
 * unchanged server can be benchmarked on it: `MODELS_DIR=<this> npm run bench -- --models isnet-fp16`.
 */
export const FP32_MODELS_DIR = path.join(PROJECT_ROOT, 'bench', '.cache', 'models-fp32');

export function linkForServer(target: string): void {
  mkdirSync(FP32_MODELS_DIR, { recursive: true });
  const link = path.join(FP32_MODELS_DIR, 'isnet-fp16.onnx');
  rmSync(link, { force: true });
  symlinkSync(path.resolve(target), link);
}

export function writeFp32Model(source = path.join(DEFAULT_MODELS_DIR, 'isnet-fp16.onnx'), target = FP32_MODEL_FILE): void {
  const started = performance.now();
  const { bytes, counts } = convertToFp32(readFileSync(source));
  writeFileSync(target, bytes);
  // Only the default output is what the fp32 models directory is meant to serve.
  if (path.resolve(target) === FP32_MODEL_FILE) linkForServer(target);
  console.error(
    `${path.basename(source)} → ${path.basename(target)}: ${counts.tensors} tensors (${counts.values} values) widened, ` +
      `${counts.casts} casts retargeted, ${counts.declaredTypes} declared types; ${bytes.length} bytes in ${(performance.now() - started).toFixed(0)} ms` +
      (path.resolve(target) === FP32_MODEL_FILE ? `; MODELS_DIR=${path.relative(process.cwd(), FP32_MODELS_DIR)} serves it as isnet-fp16` : ''),
  );
}

if (require.main === module) writeFp32Model(process.argv[2], process.argv[3]);
