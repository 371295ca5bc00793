"""Manifests and YAML documents several test modules share."""

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

#: The "billion laughs" YAML alias bomb: nine levels of nine aliases (RELIABILITY P6.2).
LOL_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""
