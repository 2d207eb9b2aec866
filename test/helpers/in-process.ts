/**
 * Requests through a Koa app's own callback, without a network: every request started in one
 * synchronous loop runs in one event-loop turn (which is what write coalescing is about), and no
 * socket is opened or allocated per request (which is what the allocation bench needs).
 */
import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import type Koa from 'koa';

export interface InProcessResponse {
  status: number;
  body: string;
  setCookie: string[];
}

/** A function that runs one GET through the app and resolves when the response ends. */
export function inProcess(app: Koa): (path: string, cookie?: string) => Promise<InProcessResponse> {
  const handle = app.callback();
  const socket = new Socket();
  return (path, cookie) => {
    const req = new IncomingMessage(socket);
    req.method = 'GET';
    req.url = path;
    req.headers = cookie ? { cookie } : {};
    const res = new ServerResponse(req);
    let body = '';
    res.write = ((chunk: unknown) => ((body += String(chunk)), true)) as typeof res.write;
    return new Promise((resolve) => {
      res.end = ((chunk?: unknown) => {
        if (chunk !== undefined && typeof chunk !== 'function') body += String(chunk);
        const setCookie = ([] as string[]).concat((res.getHeader('set-cookie') as string[] | undefined) ?? []);
        resolve({ status: res.statusCode, body, setCookie });
        return res;
      }) as typeof res.end;
      void handle(req, res);
    });
  };
}
