// How a JavaScript client reads its own writes from ordergraph, with Apollo Client 4 (and its
// persisted-query link) and with urql: the recipes of docs/clients.md, run by
// tests/e2e/test_js_clients.py against a live server. Usage: node read-your-writes.mjs GRAPHQL_URL
import { createHash } from "node:crypto";

import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { Client as UrqlClient, fetchExchange } from "@urql/core";
import { createClient as createWsClient } from "graphql-ws";
import { map } from "rxjs";
import WebSocket from "ws";

const url = process.argv[2];
const requests = []; // what went over the wire, for the test to check
const recordingFetch = (input, init) => {
  const target = new URL(typeof input === "string" ? input : input.url);
  const body = init && init.body ? JSON.parse(init.body) : {};
  requests.push({
    method: (init && init.method) || "GET",
    hasQuery: Boolean(body.query || target.searchParams.get("query")),
    hasHash: Boolean(
      (body.extensions && body.extensions.persistedQuery) || target.searchParams.get("extensions"),
    ),
  });
  return fetch(input, init);
};

// --- Apollo Client -----------------------------------------------------------------------
// Apollo drops a response's `extensions`; a link sees them first and can report staleness.
const staleReads = [];
const staleLink = new ApolloLink((operation, forward) =>
  forward(operation).pipe(
    map((result) => {
      if (result.extensions && result.extensions.stale) {
        staleReads.push({ operation: operation.operationName, stale: result.extensions.stale });
      }
      return result;
    }),
  ),
);
const persistedQueries = new PersistedQueryLink({
  sha256: (text) => createHash("sha256").update(text).digest("hex"),
  useGETForHashedQueries: true, // queries by hash over GET: cacheable by browsers and CDNs
});
const apollo = new ApolloClient({
  cache: new InMemoryCache(),
  link: ApolloLink.from([staleLink, persistedQueries, new HttpLink({ uri: url, fetch: recordingFetch })]),
});

// Subscriptions: graphql-ws (in a browser, leave out webSocketImpl).
const ws = createWsClient({ url: url.replace(/^http/, "ws"), webSocketImpl: WebSocket });

// Resolves once every projection has reached `position` (at once if they already have).
function caughtUp(position) {
  return new Promise((resolve, reject) => {
    ws.subscribe(
      { query: "subscription ($p: Position!) { caughtUp(position: $p) { position } }", variables: { p: position } },
      { next: ({ data }) => resolve(data.caughtUp), error: reject, complete: () => {} },
    );
  });
}

const PLACE = gql`
  mutation Place($input: PlaceOrderInput!) {
    placeOrder(input: $input) {
      __typename
      ... on CommandAccepted { orderId position }
      ... on InvalidInput { field message }
      ... on RuleViolated { rule message }
    }
  }
`;
const ORDER = gql`
  query Order($id: ID!, $atLeast: Position) {
    order(id: $id, atLeast: $atLeast) { id status total version }
  }
`;

const placed = await apollo.mutate({
  mutation: PLACE,
  variables: {
    input: {
      customerId: "js-client",
      items: [{ sku: "BOOK-1", quantity: 1, unitPrice: "5.00" }],
      shippingAddress: { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" },
    },
  },
});
const { orderId, position } = placed.data.placeOrder;

// Read your write: wait for caughtUp, then read with atLeast (which also waits, bounded).
await caughtUp(position);
const first = await apollo.query({ query: ORDER, variables: { id: orderId, atLeast: position }, fetchPolicy: "network-only" });
const second = await apollo.query({ query: ORDER, variables: { id: orderId, atLeast: position }, fetchPolicy: "network-only" });
// A position nobody has written yet: answered after READ_WAIT_SECONDS, marked stale.
const ahead = await apollo.query({ query: ORDER, variables: { id: orderId, atLeast: position + 1 }, fetchPolicy: "network-only" });

// --- urql --------------------------------------------------------------------------------
// urql keeps `extensions` on every result.
const urql = new UrqlClient({ url, exchanges: [fetchExchange], preferGetMethod: false });
const fresh = await urql.query(ORDER, { id: orderId, atLeast: position }).toPromise();
const stale = await urql.query(ORDER, { id: orderId, atLeast: position + 1 }).toPromise();

await ws.dispose();
console.log(
  JSON.stringify({
    placed: placed.data.placeOrder.__typename,
    apollo: { first: first.data.order, second: second.data.order, ahead: ahead.data.order, staleReads },
    urql: {
      fresh: fresh.data.order,
      freshStale: (fresh.extensions && fresh.extensions.stale) || null,
      staleExtensions: (stale.extensions && stale.extensions.stale) || null,
    },
    requests,
  }),
);
