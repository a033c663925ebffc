"""The paper's measurements: IoU/IoP/IoG, MR@HP, AR, COCO mAP, the double-pick simulation and its
gripper defaults, the seamless-pair probe, and the evaluation runner with its plots (Table I/III,
Fig. 5/8). May import model/, aggregation/ and data/.
"""
