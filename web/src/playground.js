// The GraphiQL playground. Queries and mutations go over HTTP; subscriptions over
// graphql-transport-ws, with the Authorization header from the headers editor sent in
// connection_init (a browser cannot set headers on a WebSocket handshake).
(function () {
  "use strict";
  const httpUrl = new URL("/graphql", window.location.href).toString();
  const wsUrl = httpUrl.replace(/^http/, "ws");

  const EXAMPLE = `# ordergraph: every mutation is one command; its \`position\` is your
# read-your-writes token. Pass it as \`atLeast\` to a query, or wait for
# \`caughtUp(position:)\` in a subscription.
#
# Run a query with Ctrl-Enter.
query Orders {
  orders(first: 10) {
    totalCount
    edges { node { id customerId status total version } }
  }
  projections { name position lag state }
}
`;

  const httpFetcher = GraphiQL.createFetcher({ url: httpUrl });
  const wsClients = new Map();

  function authorization(headers) {
    if (!headers) return "";
    return headers.Authorization || headers.authorization || "";
  }

  function wsClient(headers) {
    const auth = authorization(headers);
    if (!wsClients.has(auth)) {
      wsClients.set(
        auth,
        graphqlWs.createClient({
          url: wsUrl,
          lazy: true,
          connectionParams: auth ? { Authorization: auth } : {},
        }),
      );
    }
    return wsClients.get(auth);
  }

  // The operation a request runs. GraphiQL can pass the name of an operation that an edit
  // removed; with one operation left in the document, that one is meant.
  function chosenOperation(params) {
    let document;
    try {
      document = GraphiQL.GraphQL.parse(params.query);
    } catch (error) {
      return { params, operation: null }; // let the server report the syntax error
    }
    const operations = document.definitions.filter((d) => d.kind === "OperationDefinition");
    const named = operations.find((op) => op.name && op.name.value === params.operationName);
    if (named) return { params, operation: named };
    if (operations.length === 1) {
      const only = operations[0];
      return { params: { ...params, operationName: only.name ? only.name.value : undefined }, operation: only };
    }
    return { params, operation: null };
  }

  function fetcher(graphQLParams, options) {
    const { params, operation } = chosenOperation(graphQLParams);
    if (operation && operation.operation === "subscription") {
      return wsClient(options && options.headers).iterate({
        query: params.query,
        variables: params.variables,
        operationName: params.operationName,
      });
    }
    return httpFetcher(params, options);
  }

  const explorer = GraphiQLPluginExplorer.explorerPlugin();
  const root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher,
      defaultQuery: EXAMPLE,
      plugins: [explorer],
      defaultEditorToolsVisibility: true,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: true,
    }),
  );
})();
