// Koa 2 is installed as the `koa2` alias to run the same tests on both majors; its API for these
// tests is Koa 3's.
declare module 'koa2' {
  import Koa from 'koa';
  export default Koa;
}
