/** Start an example's app when its file is run directly: the URL it serves goes to stdout. */
import { pathToFileURL } from 'node:url';
import type Koa from 'koa';

export function isMain(url: string): boolean {
  return url === pathToFileURL(process.argv[1] ?? '').href;
}

export function listen(app: Koa, what: string, extra = ''): void {
  const port = Number(process.env.PORT ?? 3000);
  const server = app.listen(port, '127.0.0.1', () => {
    const address = server.address();
    console.log(
      `koa-session-machine ${what} at http://127.0.0.1:${typeof address === 'object' && address ? address.port : port}/${extra}`,
    );
  });
}
