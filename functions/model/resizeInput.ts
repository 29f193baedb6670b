/**
 * The `resize-input` transform of the registry: rewrites a fixed-size NCHW
 * ONNX model for another square input side, at fetch time (weights.ts runs
 * it, like convertFp32.ts, and imports it only then).
 *
 * The IS-Net export took `F.upsample(x, size=y.shape[2:])` as constants:
 * every Resize gets its sizes from Concat(Slice(Shape(x), 0, 2), [h, w]),
 * batch and channels from the tensor, height and width baked in (32…1024).
 * Making the input symbolic is therefore not enough: at 512² the first
 * Resize still makes a 32² map where its neighbour in the Concat is 16²
 * ("Non concat axis dimensions must match"). So the graph is rewritten in
 * proportion: the declared input, output and intermediate spatial dims, and
 * every constant that gives a Resize's spatial size. Convolutions, pools and
 * Resizes by `scales` follow their input's size by themselves.
 *
 * It refuses rather than guesses: an operator outside the known size-neutral
 * set (Reshape, Expand, a Slice of activations… could hide a spatial size), a
 * Resize whose sizes come from anything but the two patterns above, a size
 * that does not scale to a whole number, or an input that is not [N, C, from,
 * from]. The output is deterministic for a given onnx-proto and protobufjs,
 * which is what lets the registry pin its checksum.
 */
import { onnx } from 'onnx-proto';

const INT64: number = onnx.TensorProto.DataType.INT64;

/**
 * Operators whose output's height and width follow from their inputs' and
 * their attributes alone, whatever the input's size: the rewrite need not
 * look inside them. Shape and Slice are here for the Resize pattern, and a
 * Slice is further checked to read a shape, never an activation.
 */
const SIZE_NEUTRAL = new Set([
  'Add', 'AveragePool', 'BatchNormalization', 'Cast', 'Clip', 'Concat', 'Constant', 'Conv', 'Div', 'Identity',
  'LeakyRelu', 'MaxPool', 'Mul', 'Relu', 'Resize', 'Shape', 'Sigmoid', 'Slice', 'Sub', 'Tanh',
]);

export interface ResizeCounts {
  /** Resize nodes whose spatial size constants were rewritten. */
  resizes: number;
  /** Constant tensors rewritten (one may serve several Resizes). */
  constants: number;
  /** Declared shapes (inputs, outputs, value infos) whose height and width were rewritten. */
  declaredShapes: number;
}

/** protobufjs gives int64 fields as numbers or Longs, and a Long converts with Number(). */
function toNumber(value: unknown): number {
  return Number(value);
}

class Scaler {
  constructor(
    readonly from: number,
    readonly to: number,
  ) {}

  scale(value: number, what: string): number {
    const scaled = (value * this.to) / this.from;
    if (!Number.isInteger(scaled) || scaled < 1) throw new Error(`${what}: ${value} × ${this.to}/${this.from} is not a whole size`);
    return scaled;
  }
}

/** An int64 tensor's values, wherever the exporter put them. */
function int64Values(tensor: onnx.ITensorProto, what: string): number[] {
  if (tensor.dataType !== INT64) throw new Error(`${what} is not int64`);
  if (tensor.rawData && tensor.rawData.length > 0) {
    // Copied to an aligned buffer; the host is little-endian like the format (x86, ARM).
    return [...new BigInt64Array(new Uint8Array(tensor.rawData).buffer)].map(Number);
  }
  return (tensor.int64Data ?? []).map(toNumber);
}

function setInt64Values(tensor: onnx.ITensorProto, values: readonly number[]): void {
  if (tensor.rawData && tensor.rawData.length > 0) tensor.rawData = new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer);
  else tensor.int64Data = [...values];
}

/** Rank-4 NCHW shapes get their last two dims scaled; symbolic dims and other ranks are left alone. */
function rewriteDeclared(value: onnx.IValueInfoProto, scaler: Scaler, counts: ResizeCounts): void {
  const dims = value.type?.tensorType?.shape?.dim;
  if (!dims || dims.length !== 4) return;
  let changed = false;
  for (const dim of dims.slice(2)) {
    if (dim.dimValue === null || dim.dimValue === undefined) continue;
    dim.dimValue = scaler.scale(toNumber(dim.dimValue), `the declared shape of ${value.name}`);
    changed = true;
  }
  if (changed) counts.declaredShapes += 1;
}

class Graph {
  private readonly producers = new Map<string, onnx.INodeProto>();
  private readonly initializers = new Map<string, onnx.ITensorProto>();

  constructor(readonly graph: onnx.IGraphProto) {
    for (const node of graph.node ?? []) for (const output of node.output ?? []) this.producers.set(output, node);
    for (const tensor of graph.initializer ?? []) if (tensor.name) this.initializers.set(tensor.name, tensor);
  }

  producer(name: string): onnx.INodeProto | undefined {
    return this.producers.get(name);
  }

  isInitializer(name: string): boolean {
    return this.initializers.has(name);
  }

  /** The tensor an initializer or a Constant node holds, else undefined (a computed value). */
  constant(name: string): onnx.ITensorProto | undefined {
    const tensor = this.initializers.get(name);
    if (tensor) return tensor;
    const node = this.producers.get(name);
    if (node?.opType !== 'Constant') return undefined;
    const value = (node.attribute ?? []).find((attribute) => attribute.name === 'value')?.t;
    if (!value) throw new Error(`Constant ${node.name} has no tensor value`);
    return value;
  }
}

/**
 * How many leading shape elements a Concat part that is computed gives: only
 * `Slice(Shape(x), [start], [end])` on axis 0 with constant bounds, the
 * exporter's "batch and channels of x".
 */
function shapeSliceLength(graph: Graph, name: string, where: string): number {
  const slice = graph.producer(name);
  const source = slice?.input?.[0];
  if (slice?.opType !== 'Slice' || !source || graph.producer(source)?.opType !== 'Shape') {
    throw new Error(`${where}: a computed part that is not a slice of a shape`);
  }
  const bound = (index: number): number | undefined => {
    const input = slice.input?.[index];
    const tensor = input ? graph.constant(input) : undefined;
    return tensor ? int64Values(tensor, `${where}'s slice bound`)[0] : undefined;
  };
  const [start, end, axis = 0, step = 1] = [bound(1), bound(2), bound(3), bound(4)];
  if (start === undefined || end === undefined || axis !== 0 || step !== 1 || start < 0 || end < start || end > 4) {
    throw new Error(`${where}: a slice of a shape without constant, forward bounds on axis 0`);
  }
  return end - start;
}

/** The constants that set a Resize's height and width, with the offset of each in its 4-element sizes. */
function sizeConstants(graph: Graph, resize: onnx.INodeProto): { tensor: onnx.ITensorProto; offset: number }[] {
  const where = `Resize ${resize.name}`;
  const sizes = resize.input?.[3];
  if (!sizes) return [];
  const whole = graph.constant(sizes);
  if (whole) return [{ tensor: whole, offset: 0 }];
  const concat = graph.producer(sizes);
  if (concat?.opType !== 'Concat') throw new Error(`${where}: its sizes are computed by ${concat?.opType ?? 'nothing known'}`);
  const parts: { tensor: onnx.ITensorProto; offset: number }[] = [];
  let offset = 0;
  for (const input of concat.input ?? []) {
    const tensor = graph.constant(input);
    if (tensor) {
      parts.push({ tensor, offset });
      offset += int64Values(tensor, `${where}'s sizes`).length;
    } else {
      offset += shapeSliceLength(graph, input, where);
    }
  }
  if (offset !== 4) throw new Error(`${where}: its sizes have ${offset} elements, not 4`);
  return parts;
}

function checkOperators(graph: onnx.IGraphProto, constants: Graph): void {
  for (const node of graph.node ?? []) {
    const op = node.opType ?? '';
    if (node.domain || !SIZE_NEUTRAL.has(op)) throw new Error(`node ${node.name} (${node.domain ? `${node.domain}.` : ''}${op}) may carry a spatial size this rewrite does not know`);
    if (op === 'Slice' && constants.producer(node.input?.[0] ?? '')?.opType !== 'Shape') throw new Error(`Slice ${node.name} slices an activation, whose bounds would be spatial`);
    if ((node.attribute ?? []).some((attribute) => attribute.g || (attribute.graphs ?? []).length > 0)) throw new Error(`node ${node.name} has a subgraph`);
  }
}

function checkInput(graph: onnx.IGraphProto, from: number): void {
  const initializers = new Set((graph.initializer ?? []).map((tensor) => tensor.name));
  const inputs = (graph.input ?? []).filter((value) => !initializers.has(value.name));
  const dims = inputs[0]?.type?.tensorType?.shape?.dim?.map((dim) => toNumber(dim.dimValue));
  if (inputs.length !== 1 || dims?.length !== 4 || dims[2] !== from || dims[3] !== from) {
    throw new Error(`expected one input of shape [N, C, ${from}, ${from}], got ${JSON.stringify(dims ?? null)}`);
  }
}

/** The model at `to`² from its bytes at `from`², with what was rewritten. */
export function resizeInput(model: Uint8Array, from: number, to: number): { bytes: Uint8Array; counts: ResizeCounts } {
  const decoded = onnx.ModelProto.decode(model);
  const graph = decoded.graph;
  if (!graph) throw new Error('the model has no graph');
  checkInput(graph, from);
  const lookup = new Graph(graph);
  checkOperators(graph, lookup);
  const scaler = new Scaler(from, to);
  const counts: ResizeCounts = { resizes: 0, constants: 0, declaredShapes: 0 };

  // A constant may feed several Resizes: each is rewritten once.
  const rewritten = new Set<onnx.ITensorProto>();
  for (const node of graph.node ?? []) {
    if (node.opType !== 'Resize') continue;
    const parts = sizeConstants(lookup, node);
    for (const { tensor, offset } of parts) {
      if (rewritten.has(tensor)) continue;
      rewritten.add(tensor);
      const values = int64Values(tensor, `Resize ${node.name}'s sizes`);
      // Elements 2 and 3 of [N, C, H, W] are the spatial ones; a part before them is batch or channels.
      setInt64Values(tensor, values.map((value, index) => (offset + index >= 2 ? scaler.scale(value, `Resize ${node.name}'s size`) : value)));
      counts.constants += 1;
    }
    if (parts.length > 0) counts.resizes += 1;
  }
  // Initializers are weights: a rank-4 kernel's last dims are not the image's.
  for (const value of [...(graph.input ?? []), ...(graph.output ?? []), ...(graph.valueInfo ?? [])]) {
    if (!lookup.isInitializer(value.name ?? '')) rewriteDeclared(value, scaler, counts);
  }
  decoded.producerName = `${decoded.producerName} + detourage resize-input ${to}`;
  return { bytes: onnx.ModelProto.encode(decoded).finish(), counts };
}
