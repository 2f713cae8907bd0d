// The receiver of the AutoPi data guide ("Send Device Data to Own Server", full example):
// express.json() parses the array, a middleware checks `Authorization: Bearer <token>`
// (401 otherwise), and POST / answers 200 with an empty body. It stores nothing: it is the
// yardstick bench/ingest_http.py --reference measures thingwire against, side by side
// (docs/benchmarks.md). One difference from the guide's text: it ends the answer with
// res.status(200).end(); the guide's res.response(200) is not an Express method and would
// answer every push with a 500.
"use strict";

const express = require("express");

const port = Number(process.env.PORT || 8000);
const authorizedToken = process.env.AUTH_TOKEN || "SOME TOKEN PASTED IN HERE OR SOMEWHERE ELSE";

function authenticate(req, res, next) {
  if (req.get("Authorization") !== `Bearer ${authorizedToken}`) {
    res.status(401).end();
    return;
  }
  next();
}

const app = express();
app.use(express.json());
app.post("/", authenticate, (req, res) => {
  const data = req.body; // the device's records; the guide's example only logs them
  void data;
  res.status(200).end();
});
app.listen(port, "127.0.0.1", () => {
  console.log(`receiver listening on ${port}`);
});
