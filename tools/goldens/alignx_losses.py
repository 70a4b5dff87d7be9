"""PyTorch goldens for AlignX's stage-1 losses (src/align/losses.ts).

    /usr/bin/python3 tools/goldens/alignx_losses.py     # writes test/fixtures/goldens/alignx_losses.json

The computation is the reference's (ictnlp/AlignX, modeling_llama_with_contrastive_learning_and_language_
matching_within_inst.py: compute_contrastive_loss, compute_language_matching_loss and languageMatchingMLP),
restated line by line in float64, with its materialized pair inputs, on random states:

  ctr  from hidden [B, T, D] (hidden_states[align_layer]) and src_tgt_index; absent when B = 1 (the
       reference adds the integer 0)
  lam  from last [B, T, D] (hidden_states[-1]), src_tgt_index, src_lang, tgt_lang and the classifier's
       gate [w, 2D], up [w, 2D], down [2, w] (HF's LlamaMLP with hidden_act silu)
Gradients: d ctr / d hidden; d lam / d last, gate, up, down (upstream 1). Sequences have the packer's layout
(BOS, template, source = 1, template, target = 2, EOS, right padding), padding rows hold large values (the
masks must keep them out), and the language sets differ per case (all one pair, mixed, repeated).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from common import case, gen, rand, randn, write


def contrastive(hidden, src_tgt_index, temperature):
    # compute_contrastive_loss, as the reference writes it.
    src_mask = (src_tgt_index == 1)
    src_sent_lengths = src_mask.sum(dim=1).unsqueeze(-1)
    anchor_feature = (hidden * src_mask.unsqueeze(-1)).sum(dim=1) / src_sent_lengths
    tgt_mask = (src_tgt_index == 2)
    tgt_sent_lengths = tgt_mask.sum(dim=1).unsqueeze(-1)
    contrast_feature = (hidden * tgt_mask.unsqueeze(-1)).sum(dim=1) / tgt_sent_lengths
    npairs, feature_dim = anchor_feature.shape
    sim = nn.CosineSimilarity(dim=-1)
    anchor_dot_contrast = sim(anchor_feature.expand((npairs, npairs, feature_dim)),
                              torch.transpose(contrast_feature.expand((npairs, npairs, feature_dim)), 0, 1))
    loss = -nn.LogSoftmax(0)(torch.div(anchor_dot_contrast, temperature)).diag().sum()
    return loss / npairs / 2


def classifier(x, gate, up, down):
    # LlamaMLP: down_proj(act_fn(gate_proj(x)) * up_proj(x)), act silu, no biases.
    return F.linear(F.silu(F.linear(x, gate)) * F.linear(x, up), down)


def language_matching(last, src_tgt_index, src_lang, tgt_lang, gate, up, down):
    # compute_language_matching_loss, as the reference writes it.
    hidden_states = last[..., :-1, :].contiguous()
    src_tgt_index = src_tgt_index[..., 1:].contiguous()
    src_mask = (src_tgt_index == 1)
    src_sent_lengths = src_mask.sum(dim=1).unsqueeze(-1)
    src_embeddings = (hidden_states * src_mask.unsqueeze(-1)).sum(dim=1) / src_sent_lengths
    tgt_mask = (src_tgt_index == 2)
    tgt_sent_lengths = tgt_mask.sum(dim=1).unsqueeze(-1)
    tgt_embeddings = (hidden_states * tgt_mask.unsqueeze(-1)).sum(dim=1) / tgt_sent_lengths
    embeddings = torch.cat((src_embeddings, tgt_embeddings), dim=0)
    lang = torch.cat((src_lang, tgt_lang), dim=0)
    bsz, feature_dim = embeddings.shape
    embeddings_i = embeddings.unsqueeze(1).repeat(1, bsz, 1)
    embeddings_j = embeddings.unsqueeze(0).repeat(bsz, 1, 1)
    concat_embeddings = torch.cat((embeddings_i, embeddings_j), dim=-1)
    logits = classifier(concat_embeddings, gate, up, down)
    lang_labels_i = lang.unsqueeze(1).repeat(1, bsz)
    lang_labels_j = lang.unsqueeze(0).repeat(bsz, 1)
    ground_truth = (lang_labels_i == lang_labels_j).long()
    return nn.CrossEntropyLoss()(logits.view(-1, 2), ground_truth.view(-1))


def make_index(g, B, T):
    """Rows in the packer's layout, right-padded: [BOS, template..., src..., template..., tgt..., EOS, pad...]."""
    idx = torch.zeros(B, T, dtype=torch.int64)
    lengths = []
    for b in range(B):
        r = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=g))
        pre = r(1, 3)          # BOS (+ template); first case of each batch starts the source right after BOS
        if b == 0:
            pre = 1
        src = r(1, 5)
        mid = r(1, 3)
        tgt = r(3, 6)
        n = pre + src + mid + tgt + 1
        assert n <= T, (n, T)
        idx[b, pre:pre + src] = 1
        idx[b, pre + src + mid:pre + src + mid + tgt] = 2
        lengths.append(n)
    # The longest row fills T (no padding there), the others are right-padded.
    return idx, lengths


def one(g, name, B, T, D, w, src_lang, tgt_lang, temperature=0.1):
    idx, lengths = make_index(g, B, T)
    hidden = randn(g, B, T, D)
    last = randn(g, B, T, D)
    for b, n in enumerate(lengths):  # garbage in padding rows: the masks must keep it out
        hidden[b, n:] = 1e4
        last[b, n:] = -1e4
    # 4x the nn.Linear bounds, so the pair logits are O(1) and a wrong label or pair moves the loss visibly
    bound_in, bound_w = 4 * (2 * D) ** -0.5, 4 * w ** -0.5
    gate = rand(g, w, 2 * D, lo=-bound_in, hi=bound_in)
    up = rand(g, w, 2 * D, lo=-bound_in, hi=bound_in)
    down = rand(g, 2, w, lo=-bound_w, hi=bound_w)
    sl = torch.tensor(src_lang, dtype=torch.int64)
    tl = torch.tensor(tgt_lang, dtype=torch.int64)

    outputs, grads = {}, {}
    if B > 1:
        h = hidden.clone().requires_grad_(True)
        ctr = contrastive(h, idx, temperature)
        ctr.backward()
        outputs["ctr"] = ctr.detach().reshape(1)
        grads["hidden"] = h.grad
    leaves = {k: v.clone().requires_grad_(True) for k, v in (("last", last), ("gate", gate), ("up", up), ("down", down))}
    lam = language_matching(leaves["last"], idx, sl, tl, leaves["gate"], leaves["up"], leaves["down"])
    lam.backward()
    outputs["lam"] = lam.detach().reshape(1)
    for k, v in leaves.items():
        grads[k] = v.grad
    inputs = {"hidden": hidden, "last": last, "src_tgt_index": idx, "src_lang": sl, "tgt_lang": tl, "gate": gate, "up": up, "down": down}
    return case(name, inputs, outputs, params={"temperature": temperature, "B": B, "T": T, "D": D, "w": w}, grads=grads)


def main():
    g = gen(20250924)
    cases = [
        one(g, "B=1 (no contrastive term), one language pair", 1, 12, 8, 6, [0], [2]),
        one(g, "B=2, deu->eng and eng->deu", 2, 16, 8, 6, [1, 2], [2, 1]),
        one(g, "B=3, one language pair in every example", 3, 18, 12, 5, [4, 4, 4], [2, 2, 2]),
        one(g, "B=4, mixed languages, tau 0.05", 4, 20, 8, 7, [0, 2, 5, 2], [2, 0, 2, 9], temperature=0.05),
        one(g, "B=6, w=128 (the default width), tau 0.1", 6, 18, 8, 128, [2, 1, 3, 2, 2, 7], [1, 2, 2, 3, 7, 2]),
    ]
    write("alignx_losses", cases)


if __name__ == "__main__":
    main()
