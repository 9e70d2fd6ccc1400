// A minimal GGUF v3 encoder and header reader: enough to generate test models (tiny ones in memory, full
// published shapes streamed to disk) and to read a model's shape, without llama.cpp's own tooling.

import { open } from 'node:fs/promises';

export type GgufValue =
  | { type: 'u32' | 'i32' | 'f32' | 'u64'; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'array'; itemType: 'string'; values: string[] }
  | { type: 'array'; itemType: 'f32' | 'i32' | 'u32'; values: number[] };

export interface GgufMetadataEntry {
  key: string;
  value: GgufValue;
}

export type GgufTensorType = 'f32' | 'f16';

export interface GgufTensor {
  name: string;
  /** ggml order: innermost (contiguous) dimension first. */
  dims: number[];
  type: GgufTensorType;
  data: Float32Array;
}

export interface GgufFile {
  metadata: GgufMetadataEntry[];
  tensors: GgufTensor[];
}

export interface GgufTensorInfo {
  name: string;
  dims: number[];
  /** ggml type id (0 = F32, 1 = F16, others are quantized formats). */
  ggmlType: number;
  /** Relative to the start of the data section. */
  offsetBytes: number;
}

export interface GgufHeader {
  version: number;
  metadata: Map<string, unknown>;
  tensors: GgufTensorInfo[];
  alignmentBytes: number;
  /** Absolute file offset where tensor data begins. */
  dataOffsetBytes: number;
}

const ggufMagic = 0x46554747; // 'GGUF' read as a little-endian u32
const ggufVersion = 3;
const defaultAlignmentBytes = 32;

// GGUF metadata value type ids.
const valueTypeIds = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
} as const;

const ggmlTypeIds: Record<GgufTensorType, number> = { f32: 0, f16: 1 };
const bytesPerElement: Record<GgufTensorType, number> = { f32: 4, f16: 2 };

function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

// Grows on demand so callers need not precompute the header size.
class ByteWriter {
  private buffer = Buffer.alloc(4096);
  length = 0;

  private reserve(bytes: number): void {
    if (this.length + bytes <= this.buffer.length) return;
    const next = Buffer.alloc(Math.max(this.buffer.length * 2, this.length + bytes));
    this.buffer.copy(next, 0, 0, this.length);
    this.buffer = next;
  }

  u32(value: number): void {
    this.reserve(4);
    this.buffer.writeUInt32LE(value, this.length);
    this.length += 4;
  }

  i32(value: number): void {
    this.reserve(4);
    this.buffer.writeInt32LE(value, this.length);
    this.length += 4;
  }

  f32(value: number): void {
    this.reserve(4);
    this.buffer.writeFloatLE(value, this.length);
    this.length += 4;
  }

  u64(value: number): void {
    this.reserve(8);
    this.buffer.writeBigUInt64LE(BigInt(value), this.length);
    this.length += 8;
  }

  bool(value: boolean): void {
    this.reserve(1);
    this.buffer.writeUInt8(value ? 1 : 0, this.length);
    this.length += 1;
  }

  string(value: string): void {
    const bytes = Buffer.from(value, 'utf8');
    this.u64(bytes.length);
    this.bytes(bytes);
  }

  bytes(value: Uint8Array): void {
    this.reserve(value.length);
    this.buffer.set(value, this.length);
    this.length += value.length;
  }

  padTo(alignment: number): void {
    const padding = alignUp(this.length, alignment) - this.length;
    this.reserve(padding);
    this.buffer.fill(0, this.length, this.length + padding);
    this.length += padding;
  }

  toBuffer(): Buffer {
    return this.buffer.subarray(0, this.length);
  }
}

function writeScalar(writer: ByteWriter, type: 'u32' | 'i32' | 'f32' | 'u64', value: number): void {
  if (type === 'u32') writer.u32(value);
  else if (type === 'i32') writer.i32(value);
  else if (type === 'f32') writer.f32(value);
  else writer.u64(value);
}

function writeValue(writer: ByteWriter, value: GgufValue): void {
  writer.u32(valueTypeIds[value.type]);
  switch (value.type) {
    case 'bool':
      writer.bool(value.value);
      return;
    case 'string':
      writer.string(value.value);
      return;
    case 'array':
      writer.u32(valueTypeIds[value.itemType]);
      writer.u64(value.values.length);
      if (value.itemType === 'string') {
        for (const item of value.values) writer.string(item);
      } else {
        for (const item of value.values) writeScalar(writer, value.itemType, item);
      }
      return;
    default:
      writeScalar(writer, value.type, value.value);
  }
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** IEEE 754 binary32 to binary16 bits, rounding to nearest even. */
export function float32ToFloat16Bits(value: number): number {
  f32Scratch[0] = value;
  const bits = u32Scratch[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;

  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 : 0);

  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00;

  if (halfExponent <= 0) {
    // Below 2^-25 even rounding up cannot reach the smallest subnormal.
    if (halfExponent < -10) return sign;
    const significand = mantissa | 0x800000;
    const shift = 14 - halfExponent;
    const halfMantissa = significand >>> shift;
    const remainder = significand & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    const roundUp = remainder > halfway || (remainder === halfway && (halfMantissa & 1) === 1);
    // A carry out of the subnormal range lands exactly on the smallest normal's bit pattern.
    return sign | (halfMantissa + (roundUp ? 1 : 0));
  }

  const combined = (halfExponent << 10) | (mantissa >>> 13);
  const remainder = mantissa & 0x1fff;
  const roundUp = remainder > 0x1000 || (remainder === 0x1000 && (combined & 1) === 1);
  // A carry into the exponent is correct, and overflowing past the largest finite gives infinity.
  return sign | (combined + (roundUp ? 1 : 0));
}

/** How many values a tensor of these dimensions holds. */
export function elementCount(dims: readonly number[]): number {
  return dims.reduce((product, dim) => product * dim, 1);
}

function encodeTensorData(tensor: GgufTensor): Buffer {
  const elements = elementCount(tensor.dims);
  if (elements !== tensor.data.length) {
    throw new Error(
      `GGUF tensor ${tensor.name}: dims [${tensor.dims.join(', ')}] need ${elements} values, got ${tensor.data.length}`,
    );
  }
  const bytes = Buffer.alloc(elements * bytesPerElement[tensor.type]);
  if (tensor.type === 'f32') {
    for (let i = 0; i < elements; i++) bytes.writeFloatLE(tensor.data[i]!, i * 4);
  } else {
    for (let i = 0; i < elements; i++) bytes.writeUInt16LE(float32ToFloat16Bits(tensor.data[i]!), i * 2);
  }
  return bytes;
}

function alignmentOf(metadata: GgufMetadataEntry[]): number {
  const entry = metadata.find((item) => item.key === 'general.alignment');
  if (!entry) return defaultAlignmentBytes;
  if (entry.value.type !== 'u32' || entry.value.value <= 0 || entry.value.value % 8 !== 0) {
    throw new Error('GGUF general.alignment must be a u32 multiple of 8');
  }
  return entry.value.value;
}

/** A tensor as the header describes it: its data is written separately (see writeGgufFile). */
export interface GgufTensorLayout {
  name: string;
  /** ggml order: innermost (contiguous) dimension first. */
  dims: number[];
  type: GgufTensorType;
}

export function tensorDataBytes(tensor: GgufTensorLayout): number {
  return elementCount(tensor.dims) * bytesPerElement[tensor.type];
}

/**
 * The header (metadata, tensor infos) padded to the alignment, so tensor data can follow it directly,
 * each tensor padded to the alignment in turn.
 */
function encodeHeader(metadata: GgufMetadataEntry[], tensors: GgufTensorLayout[]): Buffer {
  const alignmentBytes = alignmentOf(metadata);
  const writer = new ByteWriter();
  writer.u32(ggufMagic);
  writer.u32(ggufVersion);
  writer.u64(tensors.length);
  writer.u64(metadata.length);

  for (const entry of metadata) {
    writer.string(entry.key);
    writeValue(writer, entry.value);
  }

  let offsetBytes = 0;
  for (const tensor of tensors) {
    writer.string(tensor.name);
    writer.u32(tensor.dims.length);
    for (const dim of tensor.dims) writer.u64(dim);
    writer.u32(ggmlTypeIds[tensor.type]);
    writer.u64(offsetBytes);
    offsetBytes = alignUp(offsetBytes + tensorDataBytes(tensor), alignmentBytes);
  }
  writer.padTo(alignmentBytes);
  return Buffer.from(writer.toBuffer());
}

export function encodeGguf(file: GgufFile): Buffer {
  const alignmentBytes = alignmentOf(file.metadata);
  const writer = new ByteWriter();
  writer.bytes(encodeHeader(file.metadata, file.tensors));
  for (const tensor of file.tensors) {
    writer.bytes(encodeTensorData(tensor));
    writer.padTo(alignmentBytes);
  }
  // Copy so the returned buffer does not pin the writer's over-allocated backing store.
  return Buffer.from(writer.toBuffer());
}

/** A tensor whose data comes in chunks that together hold exactly `tensorDataBytes(tensor)` bytes. */
export interface GgufStreamedTensor extends GgufTensorLayout {
  chunks: () => Iterable<Uint8Array>;
}

/**
 * Writes a GGUF file of any size, one chunk at a time: models far larger than a Buffer can hold (an 8B
 * model in F16 is 16 GB) never sit in memory.
 */
export async function writeGgufFile(
  path: string,
  metadata: GgufMetadataEntry[],
  tensors: GgufStreamedTensor[],
): Promise<number> {
  const alignmentBytes = alignmentOf(metadata);
  const file = await open(path, 'w');
  try {
    let position = 0;
    const write = async (bytes: Uint8Array): Promise<void> => {
      let written = 0;
      while (written < bytes.length) {
        const { bytesWritten } = await file.write(bytes, written, bytes.length - written, position);
        written += bytesWritten;
        position += bytesWritten;
      }
    };
    await write(encodeHeader(metadata, tensors));
    for (const tensor of tensors) {
      const start = position;
      for (const chunk of tensor.chunks()) await write(chunk);
      const expected = tensorDataBytes(tensor);
      if (position - start !== expected)
        throw new Error(`GGUF tensor ${tensor.name}: wrote ${position - start} bytes, needs ${expected}`);
      await write(Buffer.alloc(alignUp(position, alignmentBytes) - position));
    }
    return position;
  } finally {
    await file.close();
  }
}

class ByteReader {
  offset = 0;

  constructor(private readonly buffer: Buffer) {}

  private need(bytes: number): void {
    if (this.offset + bytes > this.buffer.length) {
      throw new Error(`GGUF header truncated at byte ${this.offset} (needed ${bytes} more)`);
    }
  }

  u8(): number {
    this.need(1);
    return this.buffer.readUInt8(this.offset++);
  }

  i8(): number {
    this.need(1);
    return this.buffer.readInt8(this.offset++);
  }

  u16(): number {
    this.need(2);
    const value = this.buffer.readUInt16LE(this.offset);
    this.offset += 2;
    return value;
  }

  i16(): number {
    this.need(2);
    const value = this.buffer.readInt16LE(this.offset);
    this.offset += 2;
    return value;
  }

  u32(): number {
    this.need(4);
    const value = this.buffer.readUInt32LE(this.offset);
    this.offset += 4;
    return value;
  }

  i32(): number {
    this.need(4);
    const value = this.buffer.readInt32LE(this.offset);
    this.offset += 4;
    return value;
  }

  f32(): number {
    this.need(4);
    const value = this.buffer.readFloatLE(this.offset);
    this.offset += 4;
    return value;
  }

  f64(): number {
    this.need(8);
    const value = this.buffer.readDoubleLE(this.offset);
    this.offset += 8;
    return value;
  }

  // Plain numbers are friendlier to callers; only values past 2^53 stay bigint.
  u64(): number | bigint {
    this.need(8);
    const value = this.buffer.readBigUInt64LE(this.offset);
    this.offset += 8;
    return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  }

  i64(): number | bigint {
    this.need(8);
    const value = this.buffer.readBigInt64LE(this.offset);
    this.offset += 8;
    const safe = BigInt(Number.MAX_SAFE_INTEGER);
    return value <= safe && value >= -safe ? Number(value) : value;
  }

  // Counts and lengths must fit in memory anyway, so a bigint here means a corrupt file.
  length(): number {
    const value = this.u64();
    if (typeof value !== 'number')
      throw new Error(`GGUF length ${value} at byte ${this.offset - 8} is too large`);
    return value;
  }

  string(): string {
    const length = this.length();
    this.need(length);
    const value = this.buffer.toString('utf8', this.offset, this.offset + length);
    this.offset += length;
    return value;
  }
}

function readValue(reader: ByteReader, typeId: number): unknown {
  switch (typeId) {
    case valueTypeIds.u8:
      return reader.u8();
    case valueTypeIds.i8:
      return reader.i8();
    case valueTypeIds.u16:
      return reader.u16();
    case valueTypeIds.i16:
      return reader.i16();
    case valueTypeIds.u32:
      return reader.u32();
    case valueTypeIds.i32:
      return reader.i32();
    case valueTypeIds.f32:
      return reader.f32();
    case valueTypeIds.bool:
      return reader.u8() !== 0;
    case valueTypeIds.string:
      return reader.string();
    case valueTypeIds.u64:
      return reader.u64();
    case valueTypeIds.i64:
      return reader.i64();
    case valueTypeIds.f64:
      return reader.f64();
    case valueTypeIds.array: {
      const itemTypeId = reader.u32();
      const count = reader.length();
      const values: unknown[] = new Array(count);
      for (let i = 0; i < count; i++) values[i] = readValue(reader, itemTypeId);
      return values;
    }
    default:
      throw new Error(`GGUF value type ${typeId} at byte ${reader.offset - 4} is unknown`);
  }
}

/** Parses the header (metadata and tensor infos); only the file's leading bytes are needed. */
export function readGgufHeader(buffer: Buffer): GgufHeader {
  const reader = new ByteReader(buffer);
  const magic = reader.u32();
  if (magic !== ggufMagic) throw new Error('not a GGUF file (bad magic)');
  const version = reader.u32();
  if (version < 2 || version > 3) throw new Error(`GGUF version ${version} is not supported`);
  const tensorCount = reader.length();
  const metadataCount = reader.length();

  const metadata = new Map<string, unknown>();
  for (let i = 0; i < metadataCount; i++) {
    const key = reader.string();
    metadata.set(key, readValue(reader, reader.u32()));
  }

  const tensors: GgufTensorInfo[] = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = reader.string();
    const dimCount = reader.u32();
    const dims: number[] = [];
    for (let d = 0; d < dimCount; d++) dims.push(reader.length());
    const ggmlType = reader.u32();
    const offsetBytes = reader.length();
    tensors.push({ name, dims, ggmlType, offsetBytes });
  }

  const declaredAlignment = metadata.get('general.alignment');
  const alignmentBytes = typeof declaredAlignment === 'number' ? declaredAlignment : defaultAlignmentBytes;
  return {
    version,
    metadata,
    tensors,
    alignmentBytes,
    dataOffsetBytes: alignUp(reader.offset, alignmentBytes),
  };
}

export function readGgufMetadata(buffer: Buffer): Map<string, unknown> {
  return readGgufHeader(buffer).metadata;
}
