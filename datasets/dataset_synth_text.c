/* dataset_synth_text.c — the synthetic corpus's normal statements and negations per body region
 * (our own wording). A report draws several normal statements of its region(s); negations state
 * what was looked for and not found, and are never coded. */
#include <stddef.h>

#include "synth_int.h"

#define L(...)                                                                                     \
    (const char *const[]) { __VA_ARGS__, NULL }

const char *const *const synth_normals[R_COUNT] = {
    [R_HEAD] =
        L("The ventricles and sulci are normal in size for age.",
          "Gray-white matter differentiation is preserved.",
          "There is no midline shift or mass effect.", "The basal cisterns are patent.",
          "The visualized paranasal sinuses and mastoid air cells are clear.",
          "The calvarium is intact.", "The orbits are unremarkable.",
          "Mild periventricular white matter hypodensity, likely chronic small vessel change.",
          "No extra-axial fluid collection."),
    [R_HEADVASC] = L(
        "The vertebral arteries are patent.", "The circle of Willis is patent.",
        "No aneurysm greater than 3 mm is identified.", "The common carotid arteries are patent.",
        "The aortic arch has a normal branching pattern.", "The venous sinuses opacify normally."),
    [R_CHEST] =
        L("The heart is normal in size.", "No pericardial effusion.",
          "The central airways are patent.", "No mediastinal or hilar lymphadenopathy.",
          "The thyroid gland is unremarkable.", "The visualized upper abdomen is unremarkable.",
          "No suspicious osseous lesion.", "The lungs are otherwise clear.",
          "Mild dependent atelectasis at both bases.", "The esophagus is unremarkable."),
    [R_CHEST_PE] = L("Adequate opacification of the pulmonary arteries.",
                     "The heart is normal in size.", "The RV to LV ratio is less than 1.",
                     "No pericardial effusion.", "No mediastinal lymphadenopathy.",
                     "The thoracic aorta is normal in caliber.", "No suspicious osseous lesion."),
    [R_CHEST_XR] =
        L("The cardiomediastinal silhouette is within normal limits.", "The lungs are clear.",
          "No pleural effusion.", "The osseous structures are intact for age.",
          "Support devices are absent.", "Pulmonary vascularity is normal."),
    [R_ABD] =
        L("The liver is normal in size and attenuation.", "The gallbladder is unremarkable.",
          "The pancreas is unremarkable.", "The spleen is normal in size.",
          "The adrenal glands are normal.", "The kidneys enhance symmetrically.",
          "No hydronephrosis.", "The bladder is unremarkable.", "No free fluid or free air.",
          "No abdominal or pelvic lymphadenopathy.", "The abdominal aorta is normal in caliber.",
          "Degenerative changes of the lumbar spine.", "The lung bases are clear.",
          "The stomach and duodenum are unremarkable.",
          "Colonic diverticulosis without inflammation."),
    [R_ABD_US] =
        L("The liver measures 15 cm and is of normal echotexture.",
          "The common bile duct measures 4 mm.", "The pancreas is partially obscured by bowel gas.",
          "The spleen measures 10 cm.", "Both kidneys are normal in size without hydronephrosis.",
          "The abdominal aorta and IVC are normal in caliber.", "No ascites."),
    [R_RUQ] =
        L("The liver is of normal echotexture.", "The common bile duct measures 3 mm.",
          "No intrahepatic biliary dilatation.", "The right kidney is unremarkable.",
          "The visualized pancreas is unremarkable.", "No free fluid in the right upper quadrant."),
    [R_KIDNEY] = L("The right kidney measures 11 cm.", "The left kidney measures 11.5 cm.",
                   "No hydronephrosis.", "The bladder is unremarkable.",
                   "The ureters are not dilated.", "No perinephric stranding.",
                   "The liver and spleen are unremarkable on this noncontrast study.",
                   "No free fluid.", "The appendix is normal."),
    [R_ABD_XR] = L("Nonobstructive bowel gas pattern.", "No pneumoperitoneum on this supine view.",
                   "Moderate stool burden.", "No abnormal calcification.",
                   "The osseous structures are unremarkable."),
    [R_PELVIS_F] =
        L("The uterus measures 8 cm and is anteverted.", "The endometrium measures 4 mm.",
          "The right ovary is normal with normal flow.",
          "The left ovary is normal with normal flow.", "No free fluid in the pelvis."),
    [R_CSPINE] =
        L("Vertebral body heights are maintained.", "Alignment is normal.",
          "The prevertebral soft tissues are normal.", "The craniocervical junction is normal.",
          "Mild disc space narrowing at C5-C6.", "The facet joints are aligned."),
    [R_LSPINE] =
        L("Vertebral body heights are maintained.", "Alignment is normal.",
          "The conus terminates at L1.", "The sacroiliac joints are unremarkable.",
          "Mild disc desiccation at L4-L5 and L5-S1.", "The paraspinal soft tissues are normal."),
    [R_SHOULDER] =
        L("The glenohumeral joint is congruent.", "The acromioclavicular joint is intact.",
          "The labrum is intact.", "The biceps tendon is in the groove.",
          "The bone marrow signal is normal.", "No joint effusion."),
    [R_WRIST] = L("The carpal alignment is normal.", "The distal radioulnar joint is congruent.",
                  "Soft tissues are unremarkable.", "The scaphoid is intact."),
    [R_HIP] = L("The hip joint space is preserved.", "The sacroiliac joints are symmetric.",
                "The pubic symphysis is intact.", "Soft tissues are unremarkable."),
    [R_KNEE] = L("The menisci are intact.", "The collateral ligaments are intact.",
                 "Small joint effusion.", "The patellofemoral compartment is preserved.",
                 "The extensor mechanism is intact.", "The bone marrow signal is normal."),
    [R_LEG] = L("The tibia and fibula are intact.", "The knee and ankle joints are aligned.",
                "Soft tissues are unremarkable."),
    [R_ANKLE] =
        L("The ankle mortise is congruent.", "The talar dome is intact.",
          "Soft tissue swelling about the lateral malleolus.", "The syndesmosis is intact."),
    [R_FOOT] = L("The tarsometatarsal alignment is normal.", "The joint spaces are preserved.",
                 "Soft tissues are unremarkable.", "Mild hallux valgus."),
    [R_BREAST] = L("The breasts are heterogeneously dense.", "No suspicious calcifications.",
                   "No architectural distortion.", "The axilla is unremarkable.",
                   "Scattered fibroglandular tissue."),
    [R_SCREEN] = L("The breasts are heterogeneously dense.",
                   "There are scattered areas of"
                   " fibroglandular density.",
                   "No suspicious mass, calcification or distortion.",
                   "Stable benign-appearing calcifications.",
                   "Comparison with prior studies shows no change."),
    [R_THYROID] = L("The right lobe measures 4.5 cm.", "The left lobe measures 4.2 cm.",
                    "The isthmus measures 3 mm.", "No cervical lymphadenopathy.",
                    "The parenchyma is homogeneous."),
    [R_CAROTID] =
        L("The common carotid arteries have normal waveforms.",
          "The vertebral arteries have antegrade flow.", "Mild heterogeneous plaque at both bulbs.",
          "The external carotid arteries are patent."),
    [R_VEINS] = L("The common femoral vein is compressible with normal flow.",
                  "The femoral vein is compressible.", "The popliteal vein is compressible.",
                  "The posterior tibial and peroneal veins are patent.",
                  "Normal respiratory phasicity and augmentation.",
                  "The contralateral common femoral vein is patent."),
    [R_HEART] = L("The left ventricle is normal in size.", "Ejection fraction 58 percent.",
                  "Normal wall motion.", "The patient exercised 7 minutes on a Bruce protocol.",
                  "No diagnostic ECG changes."),
    [R_BONE] =
        L("Physiologic uptake in the kidneys and bladder.", "Degenerative uptake at both knees.",
          "Symmetric uptake in the sacroiliac joints."),
    [R_VQ] = L("Ventilation images show homogeneous distribution.",
               "The chest radiograph from today is clear.", "No matched defects."),
    [R_PET] = L("Physiologic uptake in the brain, heart, kidneys and bowel.",
                "No hypermetabolic cervical lymph nodes.", "The liver is without focal uptake.",
                "No hypermetabolic osseous lesion."),
    [R_HIDA] = L("Prompt hepatic uptake.", "Tracer appears in the small bowel at 30 minutes.",
                 "The common bile duct is visualized."),
    [R_LIVER] = L("The liver is normal in size.", "No arterially enhancing lesion.",
                  "The portal veins are patent.", "The spleen and pancreas are unremarkable.",
                  "No biliary dilatation."),
};

const char *const *const synth_negations[R_COUNT] = {
    [R_HEAD] = L("No acute intracranial hemorrhage.", "No acute territorial infarct."),
    [R_HEADVASC] = L("No large vessel occlusion.", "No hemodynamically significant stenosis."),
    [R_CHEST] =
        L("No consolidation.", "No pleural effusion or pneumothorax.", "No pulmonary mass."),
    [R_CHEST_PE] = L("No pulmonary embolism.", "No consolidation."),
    [R_CHEST_XR] = L("No focal consolidation.", "No pneumothorax.", "No pleural effusion."),
    [R_ABD] = L("No bowel obstruction.", "The appendix is normal.", "No abscess.",
                "No acute inflammatory process."),
    [R_ABD_US] = L("No gallstones.", "No focal liver lesion."),
    [R_RUQ] =
        L("No gallstones.", "No gallbladder wall thickening.", "Negative sonographic Murphy sign."),
    [R_KIDNEY] = L("No urinary tract calculus.", "No hydronephrosis."),
    [R_ABD_XR] = L("No dilated bowel loops.", "No free air."),
    [R_PELVIS_F] = L("No adnexal mass.", "No evidence of ovarian torsion."),
    [R_CSPINE] = L("No acute fracture.", "No traumatic malalignment."),
    [R_LSPINE] = L("No acute fracture.", "No spondylolisthesis."),
    [R_SHOULDER] = L("No acute fracture or dislocation.", "No rotator cuff tear."),
    [R_WRIST] = L("No acute fracture.", "No dislocation."),
    [R_HIP] = L("No acute fracture.", "No dislocation."),
    [R_KNEE] = L("No acute fracture.", "No ligament tear."),
    [R_LEG] = L("No acute fracture.", "No periosteal reaction."),
    [R_ANKLE] = L("No acute fracture.", "No dislocation."),
    [R_FOOT] = L("No acute fracture.", "No dislocation."),
    [R_BREAST] = L("No suspicious mass.", "No sonographic correlate for a solid lesion."),
    [R_SCREEN] = L("No mammographic evidence of malignancy."),
    [R_THYROID] = L("No suspicious thyroid nodule."),
    [R_CAROTID] = L("No hemodynamically significant stenosis."),
    [R_VEINS] = L("No deep vein thrombosis.", "No superficial thrombophlebitis."),
    [R_HEART] = L("No reversible perfusion defect.", "No evidence of ischemia."),
    [R_BONE] = L("No scintigraphic evidence of osseous metastatic disease."),
    [R_VQ] = L("Low probability for pulmonary embolism."),
    [R_PET] = L("No distant hypermetabolic metastasis."),
    [R_HIDA] = L("Normal gallbladder filling; no evidence of acute cholecystitis."),
    [R_LIVER] = L("No suspicious liver lesion."),
};

/* History context: comorbidities and circumstances that are never coded (only the reason for the
 * exam and the impression are). */
const char *const synth_history_extras[] = {"History of hypertension and hyperlipidemia.",
                                            "Former smoker, 20 pack-years.",
                                            "Prior cholecystectomy.",
                                            "On anticoagulation.",
                                            "Symptoms began three days ago.",
                                            "No prior imaging available at this institution.",
                                            "Type 2 diabetes.",
                                            "Pain is worse with movement and improves with rest.",
                                            "Presented to urgent care first.",
                                            "No known drug allergies.",
                                            "Referred by the primary care physician.",
                                            NULL};

/* Technique, dose and quality sentences by modality (CT, MRI, US, XR, MG, NM). */
const char *const *const synth_modality_extras[6] = {
    L("Contrast, when given, was iohexol 350 intravenously without complication.",
      "CTDIvol 11.2 mGy; DLP 512 mGy-cm.", "Coronal and sagittal reformats were reviewed.",
      "The study is of diagnostic quality.", "Mild streak artifact from the patient's arms.",
      "Images were reviewed on a dedicated workstation."),
    L("Gadolinium, when given, was administered without complication.",
      "Mild motion artifact limits evaluation of some sequences.",
      "The study is of diagnostic quality.", "Sagittal, axial and coronal planes were obtained.",
      "Images were reviewed on a dedicated workstation."),
    L("The study was performed by a registered sonographer.",
      "Evaluation is limited in part by overlying bowel gas.",
      "Representative images were archived.", "Spectral Doppler waveforms were recorded."),
    L("The visualized soft tissues are unremarkable.", "Bone mineralization is normal for age.",
      "No radiopaque foreign body.", "Positioning is adequate."),
    L("The breast tissue is adequately positioned.", "Prior mammograms were reviewed.",
      "The skin and nipples are unremarkable."),
    L("Images were acquired on a SPECT/CT camera.", "Attenuation correction was applied.",
      "Blood glucose before injection was 98 mg/dL.", "The study is of diagnostic quality."),
};

const char *const synth_closing_extras[] = {
    "Findings were discussed with the ordering provider by telephone at the time of"
    " interpretation.",
    "Recommend clinical correlation.",
    "If symptoms persist, follow-up imaging may be considered.",
    "This report was generated with voice recognition software; minor transcription errors may"
    " be present.",
    "Comparison with any outside studies would be helpful.",
    NULL};
