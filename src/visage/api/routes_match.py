"""Face operations: detect, compare, embed (no gallery), identify and verify (against a gallery)."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, File, Form, UploadFile

from visage.api.auth import Services, audited, require, services
from visage.api.keys import ApiKey
from visage.api.schemas import (
    FaceOut,
    FacesOut,
    IdentificationOut,
    IdentifyEmbeddingIn,
    VerificationOut,
)
from visage.api.uploads import expect_json, expect_multipart, read_uploads

router = APIRouter(prefix="/v1", tags=["faces"])
Ctx = Annotated[Services, Depends(services)]
Image = Annotated[UploadFile, File(description="A photo (JPEG, PNG, WebP, BMP, TIFF).")]
TopK = Annotated[int | None, Form(ge=1, le=100)]
OperatingPoint = Annotated[str | None, Form(max_length=40, description="fmr=R or fpir=R; default: the server's.")]
Purpose = Annotated[str | None, Form(max_length=1000, description="Why this search is made (audited; required "
                                                                   "for watchlist galleries).")]
MULTIPART = [Depends(expect_multipart)]


@router.post("/detect", response_model=FacesOut, dependencies=MULTIPART)
def detect(image: Image, ctx: Ctx, _: Annotated[ApiKey, Depends(require("read"))]) -> FacesOut:
    """Every face with its box, landmarks and quality; nothing is stored."""
    faces = ctx.gallery.analyzer.analyze(read_uploads([image])[1][0], embed=False)
    return FacesOut(faces=[FaceOut.of(face) for face in faces])


@router.post("/embed", response_model=FacesOut, dependencies=MULTIPART)
def embed(image: Image, ctx: Ctx, key: Annotated[ApiKey, Depends(require("identify"))]) -> FacesOut:
    """Every face with its embedding, for clients that keep their own vectors; nothing is stored."""
    with audited(ctx, key, "embed") as note:
        faces = ctx.gallery.analyzer.analyze(read_uploads([image])[1][0])
        note.result_count = len(faces)
        return FacesOut(faces=[FaceOut.of(face, with_embedding=True) for face in faces],
                        model=ctx.gallery.analyzer.model.id)


@router.post("/compare", response_model=VerificationOut, dependencies=MULTIPART)
def compare(image_a: Image, image_b: Image, ctx: Ctx, key: Annotated[ApiKey, Depends(require("identify"))],
            operating_point: OperatingPoint = None) -> VerificationOut:
    """Are the largest faces of two photos the same person? Nothing is stored."""
    _, (first, second) = read_uploads([image_a, image_b])
    point = operating_point or ctx.settings.gallery.operating_point
    with audited(ctx, key, "compare", details={"operating_point": point}):
        return VerificationOut.of(ctx.gallery.analyzer.verify(first, second, operating_point=point))


@router.post("/galleries/{gallery}/identify", response_model=list[IdentificationOut],
             dependencies=MULTIPART)
def identify(gallery: str, image: Image, ctx: Ctx, key: Annotated[ApiKey, Depends(require("identify"))],
             top_k: TopK = None, operating_point: OperatingPoint = None,
             purpose: Purpose = None) -> list[IdentificationOut]:
    """Every face in the photo with its best enrolled candidates."""
    details = {"top_k": top_k, "operating_point": operating_point, "input": "image"}
    with audited(ctx, key, "identify", gallery=gallery, purpose=purpose, details=details) as note:
        found = ctx.gallery.identify(gallery, read_uploads([image])[1][0], top_k=top_k,
                                     operating_point=operating_point, purpose=purpose)
        note.result_count = sum(len(i.candidates) for i in found)
        note.details["faces"] = len(found)
        note.details["matches"] = sum(c.same for i in found for c in i.candidates)
        return [IdentificationOut.of(i) for i in found]


@router.post("/galleries/{gallery}/identify-embedding", response_model=IdentificationOut,
             dependencies=[Depends(expect_json)])
def identify_embedding(gallery: str, body: IdentifyEmbeddingIn, ctx: Ctx,
                       key: Annotated[ApiKey, Depends(require("identify"))]) -> IdentificationOut:
    """Candidates for an embedding made by the gallery's model."""
    details = {"top_k": body.top_k, "operating_point": body.operating_point, "input": "embedding"}
    with audited(ctx, key, "identify", gallery=gallery, purpose=body.purpose, details=details) as note:
        found = ctx.gallery.identify_embedding(gallery, np.asarray(body.embedding), top_k=body.top_k,
                                               operating_point=body.operating_point, purpose=body.purpose)
        note.result_count = len(found.candidates)
        note.details["matches"] = sum(c.same for c in found.candidates)
        return IdentificationOut.of(found)


@router.post("/galleries/{gallery}/persons/{external_id:path}/verify", response_model=VerificationOut,
             dependencies=MULTIPART)
def verify(gallery: str, external_id: str, image: Image, ctx: Ctx,
           key: Annotated[ApiKey, Depends(require("identify"))], operating_point: OperatingPoint = None,
           purpose: Purpose = None) -> VerificationOut:
    """1:1: is the largest face of the photo this enrolled person?"""
    with audited(ctx, key, "verify", gallery=gallery, person=external_id, purpose=purpose,
                 details={"operating_point": operating_point}) as note:
        result = ctx.gallery.verify(gallery, external_id, read_uploads([image])[1][0],
                                    operating_point=operating_point)
        note.result_count = int(result.same)
        note.details["matches"] = int(result.same)
        return VerificationOut.of(result)
