"""Reads TensorBoard event files with TensorBoard's own reader (EventAccumulator) and prints their scalars as JSON:
{"files": [...], "scalars": {tag: [[step, value], ...]}}. argv: the logging directory."""
import json
import os
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

log_dir = sys.argv[1]
acc = EventAccumulator(log_dir, size_guidance={"scalars": 0})
acc.Reload()
scalars = {tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
print(json.dumps({"files": sorted(f for f in os.listdir(log_dir) if "tfevents" in f), "scalars": scalars}))
