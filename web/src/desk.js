// The order desk: a demonstration of read-your-writes. A command's answer carries the global
// position of its last event; the desk waits for `caughtUp(position:)` and only then reads the
// order back, so what it shows is always what the read side holds. Rows follow
// `orderChanged`; the projection panel follows `projectionUpdated`.
(function () {
  "use strict";

  const httpUrl = new URL("/graphql", window.location.href).toString();
  const wsUrl = httpUrl.replace(/^http/, "ws");
  const TOKEN_KEY = "ordergraph.token";
  const ROWS = 20;

  const ORDER_FIELDS = `id customerId status total version placedAt paidAt shippedAt cancelledAt
    lines { sku quantity unitPrice lineTotal }
    shippingAddress { line1 line2 city postalCode country }`;
  const RESULT_FIELDS = `__typename
    ... on CommandAccepted { commandId orderId version position }
    ... on InvalidInput { field message }
    ... on OrderNotFound { message }
    ... on VersionConflict { expectedVersion actualVersion message }
    ... on RuleViolated { rule message }`;

  const $ = (id) => document.getElementById(id);
  const state = { token: localStorage.getItem(TOKEN_KEY) || "", client: null, rows: new Map() };

  // ---- transport -------------------------------------------------------------------------

  function authHeader() {
    return state.token ? { Authorization: `Bearer ${state.token}` } : {};
  }

  async function graphql(query, variables) {
    const response = await fetch(httpUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json", ...authHeader() },
      body: JSON.stringify({ query, variables }),
    });
    const body = await response.json();
    if (body.errors && body.errors.length) {
      throw new Error(body.errors.map((e) => e.message).join("; "));
    }
    return body.data;
  }

  function connect() {
    if (state.client) state.client.dispose();
    const badge = $("socket-state");
    state.client = graphqlWs.createClient({
      url: wsUrl,
      connectionParams: authHeader(),
      retryAttempts: Infinity,
      shouldRetry: () => true,
      on: {
        connected: () => setBadge(badge, "live", "live"),
        closed: () => setBadge(badge, "closed", "reconnecting…"),
      },
    });
  }

  // Calls onData for each result until the subscription ends; returns the unsubscribe.
  function subscribe(query, variables, onData, onDone) {
    return state.client.subscribe(
      { query, variables },
      {
        next: (result) => (result.errors ? showSocketError(result.errors) : onData(result.data)),
        error: (error) => showSocketError(error),
        complete: () => onDone && onDone(),
      },
    );
  }

  function showSocketError(error) {
    const message = Array.isArray(error)
      ? error.map((e) => e.message).join("; ")
      : error && error.reason
        ? `socket closed: ${error.code} ${error.reason}`
        : String(error && error.message ? error.message : error);
    setBadge($("socket-state"), "failed", message);
  }

  // ---- rendering -------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function setBadge(node, kind, text) {
    node.className = `badge ${kind}`;
    node.textContent = text;
  }

  function address(a) {
    return [a.line1, a.line2, a.city, a.postalCode, a.country].filter(Boolean).join(", ");
  }

  function describeRefusal(result) {
    switch (result.__typename) {
      case "RuleViolated":
        return `RuleViolated (${result.rule}): ${result.message}`;
      case "InvalidInput":
        return `InvalidInput (${result.field}): ${result.message}`;
      case "VersionConflict":
        return `VersionConflict (expected ${result.expectedVersion}, actual ${result.actualVersion}): ${result.message}`;
      default:
        return `${result.__typename}: ${result.message}`;
    }
  }

  function orderCard(order) {
    const lines = order.lines.map((l) => `${l.quantity} × ${l.sku} @ ${l.unitPrice}`).join("; ");
    return el(
      "div",
      { class: "order-card", "data-order-id": order.id },
      el(
        "dl",
        {},
        el("dt", {}, "Order"), el("dd", {}, order.id),
        el("dt", {}, "Status"), el("dd", { class: `status ${order.status}` }, order.status),
        el("dt", {}, "Lines"), el("dd", {}, lines),
        el("dt", {}, "Total"), el("dd", { class: "total" }, order.total),
        el("dt", {}, "Ship to"), el("dd", {}, address(order.shippingAddress)),
        el("dt", {}, "Version"), el("dd", {}, String(order.version)),
      ),
    );
  }

  // ---- the write path: command, wait for the read models, read back ----------------------

  function step(id, kind, text) {
    const node = $(id);
    node.className = kind;
    node.textContent = text;
  }

  async function placeOrder(event) {
    event.preventDefault();
    const form = new FormData(event.target);
    const input = {
      customerId: form.get("customerId"),
      items: [{ sku: form.get("sku"), quantity: Number(form.get("quantity")), unitPrice: form.get("unitPrice") }],
      shippingAddress: {
        line1: form.get("line1"),
        city: form.get("city"),
        postalCode: form.get("postalCode"),
        country: form.get("country"),
      },
    };
    $("write").hidden = false;
    $("write-error").hidden = true;
    $("write-order").replaceChildren();
    for (const id of ["write-accepted", "write-waiting", "write-visible"]) step(id, "", "");
    let result;
    try {
      const data = await graphql(
        `mutation Place($input: PlaceOrderInput!) { placeOrder(input: $input) { ${RESULT_FIELDS} } }`,
        { input },
      );
      result = data.placeOrder;
    } catch (error) {
      $("write-error").hidden = false;
      $("write-error").textContent = error.message;
      return;
    }
    if (result.__typename !== "CommandAccepted") {
      $("write-error").hidden = false;
      $("write-error").textContent = describeRefusal(result);
      return;
    }
    const started = performance.now();
    step("write-accepted", "done", `Command accepted: order ${result.orderId}, position ${result.position}`);
    step("write-waiting", "pending", `Waiting for read models to reach position ${result.position}…`);
    const order = await readYourWrite(result.orderId, result.position);
    const took = Math.round(performance.now() - started);
    step("write-waiting", "done", `Read models reached position ${result.position}`);
    step("write-visible", "done", `Visible in the read side after ${took} ms:`);
    $("write-order").replaceChildren(order ? orderCard(order) : el("p", { class: "error" }, "not found"));
    if (order) upsertRow(order);
  }

  // Resolves with the order as the read side has it once every projection has `position`.
  function readYourWrite(orderId, position) {
    return new Promise((resolve) => {
      subscribe(
        "subscription Caught($p: Position!) { caughtUp(position: $p) { position projections { name position lag state } } }",
        { p: position },
        async (caught) => {
          renderProjections(caught.caughtUp.projections);
          const data = await graphql(
            `query Read($id: ID!, $p: Position) { order(id: $id, atLeast: $p) { ${ORDER_FIELDS} } }`,
            { id: orderId, p: position },
          );
          resolve(data.order);
        },
      );
    });
  }

  async function runCommand(row, mutation, inputType, input) {
    row.error.textContent = "";
    try {
      const data = await graphql(
        `mutation Act($input: ${inputType}!) { result: ${mutation}(input: $input) { ${RESULT_FIELDS} } }`,
        { input },
      );
      const result = data.result;
      if (result.__typename !== "CommandAccepted") row.error.textContent = describeRefusal(result);
      // On success the row changes when orderChanged pushes the new view.
    } catch (error) {
      row.error.textContent = error.message;
    }
  }

  // ---- the live order list ---------------------------------------------------------------

  function upsertRow(order) {
    let row = state.rows.get(order.id);
    if (!row) {
      row = makeRow(order);
      state.rows.set(order.id, row);
      $("order-rows").prepend(row.tr);
      row.unsubscribe = subscribe(
        `subscription Follow($id: ID!) { orderChanged(id: $id) { ${ORDER_FIELDS} } }`,
        { id: order.id },
        (data) => upsertRow(data.orderChanged),
      );
    }
    if (row.order && row.order.version >= order.version && row.order.status === order.status) return;
    const changed = row.order !== null;
    row.order = order;
    row.cells.status.className = `status ${order.status}`;
    row.cells.status.textContent = order.status;
    row.cells.total.textContent = order.total;
    row.cells.version.textContent = String(order.version);
    row.cells.address.textContent = address(order.shippingAddress);
    if (changed) {
      row.tr.classList.remove("flash");
      void row.tr.offsetWidth; // restart the animation
      row.tr.classList.add("flash");
    }
    $("orders-count").textContent = `(${state.rows.size} shown)`;
  }

  function makeRow(order) {
    const cells = {
      status: el("td", {}),
      total: el("td", { class: "total" }),
      version: el("td", { class: "version" }),
      address: el("td", { class: "ship-to" }),
    };
    const error = el("div", { class: "error" });
    const row = { order: null, cells, error, tr: null, unsubscribe: null };
    const act = (mutation, type, extra) => () =>
      runCommand(row, mutation, type, { orderId: order.id, ...extra() });
    const addressForm = el(
      "form",
      { class: "address", hidden: "" },
      el("input", { name: "line1", placeholder: "line 1", "aria-label": "new line 1" }),
      el("input", { name: "city", placeholder: "city", "aria-label": "new city" }),
      el("input", { name: "postalCode", placeholder: "postal code", "aria-label": "new postal code" }),
      el("input", { name: "country", placeholder: "country", "aria-label": "new country" }),
      el("button", { type: "submit" }, "Save address"),
    );
    addressForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const f = new FormData(addressForm);
      const shippingAddress = {
        line1: f.get("line1"), city: f.get("city"), postalCode: f.get("postalCode"), country: f.get("country"),
      };
      addressForm.hidden = true;
      runCommand(row, "changeShippingAddress", "ChangeShippingAddressInput", { orderId: order.id, shippingAddress });
    });
    const showAddressForm = () => {
      const a = row.order.shippingAddress;
      for (const name of ["line1", "city", "postalCode", "country"]) addressForm.elements[name].value = a[name];
      addressForm.hidden = !addressForm.hidden;
    };
    row.tr = el(
      "tr",
      { "data-order-id": order.id },
      el("td", { title: order.id }, order.id.slice(0, 8)),
      el("td", {}, order.customerId),
      cells.status,
      cells.total,
      cells.version,
      cells.address,
      el(
        "td",
        { class: "actions" },
        el("button", { onclick: act("payOrder", "PayOrderInput", () => ({ amount: row.order.total })) }, "Pay"),
        el("button", {
          onclick: act("shipOrder", "ShipOrderInput", () => ({
            carrier: "DHL",
            trackingNumber: `TRK-${Date.now()}`,
          })),
        }, "Ship"),
        el("button", { onclick: act("cancelOrder", "CancelOrderInput", () => ({ reason: "cancelled at the desk" })) }, "Cancel"),
        el("button", { onclick: showAddressForm }, "Change address"),
        addressForm,
        error,
      ),
    );
    return row;
  }

  async function loadOrders() {
    const data = await graphql(`query List($n: Int) { orders(first: $n) { edges { node { ${ORDER_FIELDS} } } } }`, { n: ROWS });
    for (const edge of data.orders.edges.slice().reverse()) upsertRow(edge.node);
  }

  // ---- the projection panel --------------------------------------------------------------

  async function loadProjections() {
    const data = await graphql("{ projections { name position lag state } }");
    renderProjections(data.projections);
  }

  function renderProjections(projections) {
    $("projection-rows").replaceChildren(
      ...projections.map((p) =>
        el(
          "tr",
          { "data-projection": p.name },
          el("td", {}, p.name),
          el("td", { class: "position" }, String(p.position)),
          el("td", {}, String(p.lag)),
          el("td", {}, el("span", { class: `badge ${p.state}` }, p.state)),
        ),
      ),
    );
  }

  // Coalesces bursts of projection updates into one re-read per animation-ish interval.
  function debounce(fn, ms) {
    let timer = null;
    return () => {
      if (timer === null) timer = setTimeout(() => { timer = null; fn().catch(showSocketError); }, ms);
    };
  }

  function follow() {
    const refreshProjections = debounce(loadProjections, 150);
    const refreshOrders = debounce(loadOrders, 250);
    subscribe(
      "subscription Updates { projectionUpdated { projection position } }",
      {},
      (data) => {
        refreshProjections();
        if (data.projectionUpdated.projection === "order_views") refreshOrders();
      },
    );
  }

  function start() {
    for (const row of state.rows.values()) if (row.unsubscribe) row.unsubscribe();
    state.rows.clear();
    $("order-rows").replaceChildren();
    connect();
    follow();
    loadOrders().catch(showSocketError);
    loadProjections().catch(showSocketError);
  }

  $("token").value = state.token;
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = $("token").value.trim();
    localStorage.setItem(TOKEN_KEY, state.token);
    start();
  });
  $("place-form").addEventListener("submit", placeOrder);
  start();
})();
