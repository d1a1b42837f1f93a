/* pool.h — a small hand-written retrieval pool shared by the retrieval and prompt tests. */
#ifndef NY_TEST_DATASETS_POOL_H
#define NY_TEST_DATASETS_POOL_H

#define REC(id, desc, reason, report, codes, extra)                                               \
    "{\"id\":\"" id "\",\"exam_description\":\"" desc "\",\"reason\":\"" reason                 \
    "\",\"report\":\"" report "\",\"codes\":\"" codes "\"" extra "}\n"

/* The query: an appendicitis CT (held-out). */
#define Q_DESC "CT ABDOMEN PELVIS WITH CONTRAST"
#define Q_REASON "right lower quadrant pain, rule out appendicitis"
#define Q_REPORT "The appendix is dilated to 12 mm with periappendiceal stranding. The liver," \
                 " spleen and kidneys are normal. IMPRESSION: Acute appendicitis."
#define QUERY REC("q", Q_DESC, Q_REASON, Q_REPORT, "74177, 26, K35.80", \
                  ",\"accession\":\"A1\",\"patient\":\"P1\",\"study_date\":\"2025-01-02\"")

#define POOL                                                                                      \
    REC("t-app", Q_DESC, "right lower quadrant pain", "Dilated appendix with periappendiceal"     \
        " stranding and an appendicolith. IMPRESSION: Acute appendicitis without perforation.",   \
        "74177, 26, K35.80", "")                                                                 \
    REC("t-div", Q_DESC, "left lower quadrant pain", "Sigmoid diverticula with pericolonic"       \
        " stranding. IMPRESSION: Acute sigmoid diverticulitis.", "74177, 26, K57.32", "")         \
    REC("t-knee-b", "XR KNEE RIGHT", "knee pain", "Medial joint space narrowing. IMPRESSION:"     \
        " Osteoarthritis of the right knee.", "73562, 26 RT, M17.11", "")                         \
    REC("t-knee-a", "XR KNEE RIGHT", "knee pain", "Medial joint space narrowing. IMPRESSION:"     \
        " Osteoarthritis of the right knee.", "73562, 26 RT, M17.11", "")                         \
    REC("t-chest", "XR CHEST 2 VIEWS", "cough", "The lungs are clear. IMPRESSION: No acute"       \
        " disease.", "71046, 26, R05.9", "")                                                      \
    REC("t-brain", "MRI BRAIN WITHOUT CONTRAST", "headache", "No mass. IMPRESSION: Normal"        \
        " brain.", "70551, 26, R51.9", "")                                                        \
    REC("t-hip", "XR HIP LEFT", "fall", "Femoral neck fracture. IMPRESSION: Left femoral neck"    \
        " fracture.", "73502, 26 LT, S72.002A", "")                                               \
    REC("t-us", "US ABDOMEN LIMITED", "right upper quadrant pain", "Gallstones. IMPRESSION:"      \
        " Cholelithiasis.", "76705, 26, K80.20", "")                                              \
    REC("t-carotid", "DUPLEX CAROTID", "dizziness", "Plaque. IMPRESSION: Right carotid"           \
        " stenosis.", "93880, 26, I65.21", "")                                                    \
    REC("t-foot", "XR FOOT LEFT", "foot pain", "Metatarsal fracture. IMPRESSION: Left fifth"      \
        " metatarsal fracture.", "73630, 26 LT, S92.302A", "")

/* Leaks: an exact copy of the query, a near-duplicate, a same-accession study. */
#define LEAK_COPY REC("t-copy", Q_DESC, Q_REASON, Q_REPORT, "74177, K35.80", "")
#define LEAK_NEAR REC("t-near", Q_DESC, Q_REASON, "The appendix is dilated to 13 mm with"          \
    " periappendiceal stranding. The liver, spleen and kidneys are normal. IMPRESSION: Acute"     \
    " appendicitis.", "74177, 26, K35.80", "")
#define LEAK_FP REC("t-fp", Q_DESC, "abdominal pain", "Inflamed appendix. IMPRESSION:"           \
    " Appendicitis.", "74177, 26, K35.80", ",\"accession\":\"A1\"")
/* Same patient, another day: not a leak. */
#define SAME_PATIENT REC("t-pat", Q_DESC, "abdominal pain", "Appendix inflamed. IMPRESSION:"      \
    " Appendicitis.", "74177, 26, K35.80", ",\"patient\":\"P1\",\"study_date\":\"2024-05-06\"")

#endif
