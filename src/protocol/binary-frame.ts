/**
 * Binary output frames: large output travels as raw bytes with a small header
 * rather than as base64 inside JSON.
 *
 *   byte 0      magic 0xB1
 *   byte 1      protocol version (1)
 *   byte 2      stream: 1 = stdout, 2 = stderr
 *   byte 3      call id length N (1..128)
 *   bytes 4..7  sequence number, uint32 big-endian
 *   bytes 8..   call id (N bytes, UTF-8), then the payload
 */
export const BINARY_MAGIC = 0xb1;
const HEADER = 8;

export interface OutputFrame {
  callId: string;
  seq: number;
  stream: 'stdout' | 'stderr';
  data: Buffer;
}

export function encodeOutputFrame(frame: OutputFrame): Buffer {
  const idBytes = Buffer.from(frame.callId, 'utf8');
  if (idBytes.length < 1 || idBytes.length > 128) throw new RangeError('call id must be 1-128 bytes');
  const head = Buffer.allocUnsafe(HEADER + idBytes.length);
  head[0] = BINARY_MAGIC;
  head[1] = 1;
  head[2] = frame.stream === 'stdout' ? 1 : 2;
  head[3] = idBytes.length;
  head.writeUInt32BE(frame.seq >>> 0, 4);
  idBytes.copy(head, HEADER);
  return Buffer.concat([head, frame.data]);
}

/** Decodes a binary frame; returns a reason string when it is not one. */
export function decodeOutputFrame(buf: Buffer): OutputFrame | { error: string } {
  if (buf.length < HEADER + 1) return { error: 'binary frame shorter than its header' };
  if (buf[0] !== BINARY_MAGIC) return { error: 'binary frame has an unknown magic byte' };
  if (buf[1] !== 1) return { error: `binary frame version ${buf[1]} is not supported` };
  const stream = buf[2] === 1 ? 'stdout' : buf[2] === 2 ? 'stderr' : undefined;
  if (!stream) return { error: 'binary frame names an unknown stream' };
  const n = buf[3] ?? 0;
  if (n < 1 || n > 128 || buf.length < HEADER + n) return { error: 'binary frame call id length is out of range' };
  return {
    callId: buf.subarray(HEADER, HEADER + n).toString('utf8'),
    seq: buf.readUInt32BE(4),
    stream,
    data: buf.subarray(HEADER + n),
  };
}
