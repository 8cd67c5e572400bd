-- ORDER_ID=<id> wrk -t1 -c16 -d10s -s bench/wrk/order.lua http://127.0.0.1:PORT/graphql: POSTs
-- the bench's order(id) query (bench/workloads.py) for one order on every request.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[{"query": "query($id: ID!) { order(id: $id) { id customerId status total version placedAt lines { sku quantity unitPrice lineTotal } shippingAddress { line1 line2 city postalCode country } } }", "variables": {"id": "]] .. os.getenv("ORDER_ID") .. [["}}]]
