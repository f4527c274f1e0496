import { request as httpRequest } from 'node:http';

export interface PlainResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json<T = unknown>(): T;
}

/**
 * An HTTP request made with `node:http`, which the module does not trace (it traces `fetch` and
 * HttpService). Tests use it as "the outside caller" so that the only client span in a trace is
 * the one under test, and the `traceparent` a test sets is the one the server sees.
 */
export function plainRequest(
  url: string,
  options: {
    method?: string;
    /** An array sends the header once per value (a repeated header). */
    headers?: Record<string, string | string[]>;
    body?: string;
    /** Sent one after another, 20 ms apart (chunked), so the server reads them from later socket events. */
    bodyChunks?: string[];
  } = {},
): Promise<PlainResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: <T>() => JSON.parse(text) as T });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (!options.bodyChunks) {
      req.end(options.body);
      return;
    }
    const chunks = [...options.bodyChunks];
    const writeNext = (): void => {
      const chunk = chunks.shift();
      if (chunk === undefined) {
        req.end();
        return;
      }
      req.write(chunk);
      setTimeout(writeNext, 20);
    };
    writeNext();
  });
}
