// The ceiling for the edge bench: a bare Bun.serve that reads the body and answers 202, nothing else.
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: Number(process.env.PORT ?? 8090),
  async fetch(req) {
    await req.arrayBuffer();
    return Response.json({ accepted: 1, rejected: [] }, { status: 202 });
  },
});
console.log(`bare server on ${server.url}`);
