"""The baseline: the tutorial's Flask scoring app, as a user has it today."""
import sys

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/score", methods=["POST"])
def score():
    features = request.json["X"]
    return jsonify({"score": features})


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
