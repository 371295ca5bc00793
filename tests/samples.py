"""Manifests several test modules share."""

#: The issue's minimal manifest, exactly as written there: it must always work as it is.
MINIMAL = """\
batch: demo
defaults:
  model: kling/kling-2.5
  duration: 5
  aspect_ratio: "16:9"
jobs:
  - id: eagle
    prompt: a majestic eagle soaring over snow-capped mountains at sunrise
  - id: harbour
    prompt: a foggy harbour at dawn, slow dolly shot, cinematic
    duration: 10
"""
