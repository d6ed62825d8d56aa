"""An ordinary task: reads its input, writes a result, prints to both streams."""

import argparse
import json
import os
import pathlib
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--greeting", default="hello")
args = parser.parse_args()

words = pathlib.Path("/inputs/data/words.txt").read_text().split()
print(f"{args.greeting}! running as uid {os.getuid()} in {os.getcwd()}")
print(f"read {len(words)} words from /inputs")
pathlib.Path("/outputs/result.json").write_text(json.dumps({"count": len(words), "words": words}) + "\n")
print("wrote /outputs/result.json", file=sys.stderr)
