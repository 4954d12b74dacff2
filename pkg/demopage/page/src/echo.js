// The wire format of albctl.echo.v1's two messages (pkg/echo/echopb/echo.proto), written by
// hand: three fields each are less code than a protobuf runtime and a descriptor to embed.
//
//   EchoRequest  { string message = 1; int32 count = 2; bytes payload = 3; }
//   EchoResponse { string message = 1; string server = 2; bytes payload = 3; }

const utf8 = { encoder: new TextEncoder(), decoder: new TextDecoder() };

function varint(out, n) {
  // int32 fields carry negative numbers as 64-bit two's complement: ten bytes.
  let v = BigInt.asUintN(64, BigInt(n));
  while (v > 0x7fn) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
}

function lengthDelimited(out, field, bytes) {
  out.push((field << 3) | 2);
  varint(out, bytes.length);
  for (const b of bytes) out.push(b);
}

// encodeEchoRequest takes {message, count, payload} and leaves out fields at their defaults, as
// proto3 does.
export function encodeEchoRequest(req) {
  const out = [];
  if (req.message) lengthDelimited(out, 1, utf8.encoder.encode(req.message));
  if (req.count) {
    out.push((2 << 3) | 0);
    varint(out, req.count);
  }
  if (req.payload && req.payload.length) lengthDelimited(out, 3, req.payload);
  return new Uint8Array(out);
}

// decodeEchoResponse returns {message, server, payload}, skipping fields it does not know.
export function decodeEchoResponse(bytes) {
  const res = { message: "", server: "", payload: new Uint8Array(0) };
  let pos = 0;
  const readVarint = () => {
    let v = 0n;
    for (let shift = 0n; ; shift += 7n) {
      if (pos >= bytes.length) throw new Error("EchoResponse: truncated varint");
      const b = bytes[pos++];
      v |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return v;
    }
  };
  const skip = (n) => {
    if (pos + n > bytes.length) throw new Error("EchoResponse: truncated field");
    pos += n;
  };
  while (pos < bytes.length) {
    const tag = Number(readVarint());
    const field = tag >>> 3;
    switch (tag & 7) {
      case 0:
        readVarint();
        break;
      case 1:
        skip(8);
        break;
      case 5:
        skip(4);
        break;
      case 2: {
        const n = Number(readVarint());
        const start = pos;
        skip(n);
        const value = bytes.subarray(start, pos);
        if (field === 1) res.message = utf8.decoder.decode(value);
        else if (field === 2) res.server = utf8.decoder.decode(value);
        else if (field === 3) res.payload = value.slice();
        break;
      }
      default:
        throw new Error(`EchoResponse: unsupported wire type ${tag & 7}`);
    }
  }
  return res;
}
