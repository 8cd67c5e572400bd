// Run by tests/e2e/test_browser.py in a page on another origin: a POST mutation, a GET query and a
// graphql-transport-ws subscription, each reporting what the browser let through.
async (api) => {
  const out = {};
  const mutation = 'mutation { payOrder(input: {orderId: "nope", amount: "1"}) { __typename } }';
  try {
    const response = await fetch(api, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: "Bearer not-checked-here" },
      body: JSON.stringify({ query: mutation }),
    });
    out.post = (await response.json()).data.payOrder.__typename;
  } catch (error) {
    out.post = "refused: " + error.name;
  }
  try {
    const response = await fetch(api + "?query=" + encodeURIComponent("{ projections { name } }"));
    out.get = (await response.json()).data.projections.length;
  } catch (error) {
    out.get = "refused: " + error.name;
  }
  out.ws = await new Promise((resolve) => {
    const ws = new WebSocket(api.replace(/^http/, "ws"), "graphql-transport-ws");
    ws.onopen = () => ws.send(JSON.stringify({ type: "connection_init", payload: {} }));
    ws.onmessage = (message) => {
      const msg = JSON.parse(message.data);
      if (msg.type === "connection_ack") {
        const query = "subscription { caughtUp(position: 0) { position } }";
        ws.send(JSON.stringify({ id: "1", type: "subscribe", payload: { query } }));
      } else if (msg.type === "next") {
        resolve("caughtUp " + msg.payload.data.caughtUp.position);
        ws.close();
      }
    };
    ws.onclose = (event) => resolve("closed " + event.code);
  });
  return out;
}
