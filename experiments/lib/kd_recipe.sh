# shellcheck shell=bash
# Sourced by the KD experiment scripts (kd_fashion_mnist.sh, kd_recent_fashion_mnist.sh). Needs
# $threads; sets `common` (flags of every run: Hinton's recipe as in the Python check of
# ../shared/notes/fashion-mnist-facts.md, Adam 1e-3, cosine, batch 128; plus EXTRA, e.g.
# EXTRA="--set data.train_limit=1000" for a quick smoke run) and the B/C ConvNet teacher
# (conv32-conv32 maxpool) as a model (`conv`) and as a teacher (`conv_as_teacher`).
common=(--no-progress --threads "$threads" --set train.optimizer.name=adam
        --set train.optimizer.lr=0.001 --set train.optimizer.weight_decay=0
        --set train.schedule.name=cosine --set train.batch_size=128 --set train.eval_every=0)
read -r -a extra <<<"${EXTRA:-}"
common+=("${extra[@]}")

conv=(--set model.arch=convnet --set model.width=32 --set model.depth=2 --set model.norm=none
      --set model.pool=maxpool)
conv_as_teacher=(--set teacher.model.arch=convnet --set teacher.model.width=32
                 --set teacher.model.depth=2 --set teacher.model.norm=none
                 --set teacher.model.pool=maxpool)
