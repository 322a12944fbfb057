-- wrk script: the tutorial's request, on every connection.
wrk.method = "POST"
wrk.body = '{"X": [1, 2]}'
wrk.headers["Content-Type"] = "application/json"
