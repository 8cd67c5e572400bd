-- wrk -t1 -c16 -d10s -s bench/wrk/place.lua http://127.0.0.1:PORT/graphql  (or /place: the
-- raw baseline): POSTs the bench's placeOrder body (bench/workloads.py) on every request.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[{"query": "mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { __typename ... on CommandAccepted { orderId version position } ... on InvalidInput { message } ... on OrderNotFound { message } ... on VersionConflict { message } ... on RuleViolated { message } } }", "variables": {"input": {"customerId": "wrk", "items": [{"sku": "BOOK-1", "quantity": 2, "unitPrice": "19.99"}, {"sku": "PEN-7", "quantity": 1, "unitPrice": "3.50"}], "shippingAddress": {"line1": "1 Main St", "city": "Springfield", "postalCode": "12345", "country": "US"}}}}]]
