import { connect as netConnect, type Socket } from 'node:net';

/**
 * Raw wire clients for what drivers refuse to send: an HTTP/1.1 request over a TCP socket, and a
 * NATS protocol client (HPUB with any header bytes, SUB to read replies with their header block
 * exactly as it arrives).
 */

export interface RawHttpResponse {
  status: number;
  /** Header lines exactly as received (Latin-1), without the status line. */
  headerLines: string[];
  body: Buffer;
}

/**
 * Sends `GET path` with `headerBytes` (CRLF-terminated lines, any bytes) after `Host` and
 * `Connection: close`, and reads the first response until the server closes the connection.
 */
export function rawHttpGet(port: number, path: string, headerBytes: Buffer, timeoutMs = 10_000): Promise<RawHttpResponse> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no HTTP response for ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    // A server that closes first may reset the rest of a long request: what was received counts.
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      const data = Buffer.concat(chunks);
      try {
        resolve(parseHttpResponse(data));
      } catch (error) {
        reject(error);
      }
    });
    socket.write(
      Buffer.concat([Buffer.from(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n`, 'latin1'), headerBytes, Buffer.from('\r\n')]),
    );
  });
}

function parseHttpResponse(data: Buffer): RawHttpResponse {
  const end = data.indexOf('\r\n\r\n');
  if (end === -1) {
    throw new Error(`incomplete HTTP response: ${JSON.stringify(data.toString('latin1').slice(0, 200))}`);
  }
  const [statusLine, ...headerLines] = data.subarray(0, end).toString('latin1').split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1] ?? 0);
  let body = data.subarray(end + 4);
  if (headerLines.some((line) => /^transfer-encoding:\s*chunked/i.test(line))) {
    body = dechunk(body);
  } else {
    const length = headerLines.map((line) => /^content-length:\s*(\d+)/i.exec(line)?.[1]).find((value) => value !== undefined);
    if (length !== undefined) {
      body = body.subarray(0, Number(length));
    }
  }
  return { status, headerLines, body };
}

function dechunk(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  let offset = 0;
  for (;;) {
    const lineEnd = body.indexOf('\r\n', offset);
    if (lineEnd === -1) {
      break;
    }
    const size = Number.parseInt(body.subarray(offset, lineEnd).toString('latin1'), 16);
    if (!Number.isFinite(size) || size === 0) {
      break;
    }
    parts.push(body.subarray(lineEnd + 2, lineEnd + 2 + size));
    offset = lineEnd + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

/** A message as a raw NATS subscriber receives it. */
export interface RawNatsMessage {
  subject: string;
  reply?: string;
  /** The header block (`NATS/1.0\r\n...\r\n\r\n`) as received; undefined for a MSG without headers. */
  headerBlock?: Buffer;
  payload: Buffer;
}

/**
 * A NATS client speaking the text protocol over a TCP socket: publishes messages whose header
 * block is whatever bytes the caller gives (the drivers refuse CR and LF in values), and hands
 * over received messages with their header block untouched.
 */
export class RawNatsClient {
  private buffer: Buffer = Buffer.alloc(0);
  private readonly handlers = new Map<string, (message: RawNatsMessage) => void>();
  private nextSid = 1;
  private pongWaiters: Array<() => void> = [];
  private errors: string[] = [];

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
      this.parse();
    });
    socket.on('error', (error) => this.errors.push(String(error)));
  }

  static async connect(host = '127.0.0.1', port = 4222): Promise<RawNatsClient> {
    const socket = netConnect({ host, port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const client = new RawNatsClient(socket);
    socket.write(`CONNECT ${JSON.stringify({ verbose: false, pedantic: false, headers: true, no_responders: false, protocol: 1, name: 'hostile-raw' })}\r\n`);
    await client.ping();
    return client;
  }

  /** Protocol errors the server sent (`-ERR ...`) and socket errors. */
  get protocolErrors(): readonly string[] {
    return this.errors;
  }

  get closed(): boolean {
    return this.socket.destroyed;
  }

  /** Resolves once the server answered a PING: everything written before was processed. */
  ping(): Promise<void> {
    return new Promise((resolve) => {
      this.pongWaiters.push(resolve);
      this.socket.write('PING\r\n');
    });
  }

  subscribe(subject: string, onMessage: (message: RawNatsMessage) => void): void {
    const sid = String(this.nextSid++);
    this.handlers.set(sid, onMessage);
    this.socket.write(`SUB ${subject} ${sid}\r\n`);
  }

  /** HPUB with the header block `NATS/1.0\r\n` + `headerLines` + `\r\n` (lines CRLF-terminated, any bytes). */
  publishWithHeaders(subject: string, reply: string | undefined, headerLines: Buffer, payload: Buffer): void {
    const block = Buffer.concat([Buffer.from('NATS/1.0\r\n'), headerLines, Buffer.from('\r\n')]);
    const head = `HPUB ${subject}${reply ? ` ${reply}` : ''} ${block.length} ${block.length + payload.length}\r\n`;
    this.socket.write(Buffer.concat([Buffer.from(head), block, payload, Buffer.from('\r\n')]));
  }

  close(): void {
    this.socket.end();
  }

  private parse(): void {
    for (;;) {
      const lineEnd = this.buffer.indexOf('\r\n');
      if (lineEnd === -1) {
        return;
      }
      const line = this.buffer.subarray(0, lineEnd).toString('latin1');
      const [op, ...args] = line.split(' ');
      if (op === 'MSG' || op === 'HMSG') {
        // MSG <subject> <sid> [reply] <bytes> / HMSG <subject> <sid> [reply] <hdr bytes> <total bytes>
        const withHeaders = op === 'HMSG';
        const sizes = withHeaders ? args.slice(-2).map(Number) : [0, Number(args.at(-1))];
        const rest = args.slice(0, withHeaders ? -2 : -1);
        const [subject, sid, reply] = rest as [string, string, string | undefined];
        const total = sizes[1]!;
        if (this.buffer.length < lineEnd + 2 + total + 2) {
          return;
        }
        const body = this.buffer.subarray(lineEnd + 2, lineEnd + 2 + total);
        this.buffer = this.buffer.subarray(lineEnd + 2 + total + 2);
        const message: RawNatsMessage = {
          subject,
          reply,
          headerBlock: withHeaders ? Buffer.from(body.subarray(0, sizes[0])) : undefined,
          payload: Buffer.from(body.subarray(withHeaders ? sizes[0] : 0)),
        };
        this.handlers.get(sid)?.(message);
        continue;
      }
      this.buffer = this.buffer.subarray(lineEnd + 2);
      if (op === 'PING') {
        this.socket.write('PONG\r\n');
      } else if (op === 'PONG') {
        this.pongWaiters.shift()?.();
      } else if (op === '-ERR') {
        this.errors.push(line);
      }
    }
  }
}

/** The `name: value` lines of a NATS header block (after `NATS/1.0`), split at the first colon, bytes as Latin-1. */
export function natsHeaderBlockPairs(block: Buffer | undefined): { pairs: Array<[string, string]>; lines: string[] } {
  if (!block) {
    return { pairs: [], lines: [] };
  }
  const lines = block.toString('latin1').split('\r\n');
  const pairs: Array<[string, string]> = [];
  for (const line of lines.slice(1)) {
    if (line === '') {
      continue;
    }
    const colon = line.indexOf(':');
    pairs.push(colon === -1 ? [line, ''] : [line.slice(0, colon), line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '')]);
  }
  return { pairs, lines };
}
