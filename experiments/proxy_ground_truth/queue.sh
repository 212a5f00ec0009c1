#!/bin/sh
# The proxy variants of the pilot, one after another (each run resumes where it stopped).
cd "$(dirname "$0")"
python run.py nb201 --archs 30 --out results/nb201-deep16.jsonl --resolution 16 --space channels=8 cells=5 --set lr=0.1 warmup=0.1 zero_init=true --workers 2 > logs/nb201-deep16.log 2>&1
python run.py nas_bench_macro --archs 30 --out results/macro-tuned.jsonl --space width_mult=0.25 --set lr=0.1 warmup=0.1 zero_init=true --workers 2 > logs/macro-tuned.log 2>&1
python run.py nas_bench_macro --archs 30 --out results/macro-default.jsonl --space width_mult=0.25 --workers 2 > logs/macro-default.log 2>&1
python run.py nb201 --archs 30 --out results/nb201-deep16-sgd002.jsonl --resolution 16 --space channels=8 cells=5 --workers 2 > logs/nb201-deep16-sgd002.log 2>&1
python run.py nb201 --archs 10 --seed 1 --out results/nb201-deep16-seed1.jsonl --resolution 16 --space channels=8 cells=5 --set lr=0.1 warmup=0.1 zero_init=true --workers 2 > logs/nb201-deep16-seed1.log 2>&1
python run.py nas_bench_macro --archs 10 --seed 1 --out results/macro-tuned-seed1.jsonl --space width_mult=0.25 --set lr=0.1 warmup=0.1 zero_init=true --workers 2 > logs/macro-tuned-seed1.log 2>&1
