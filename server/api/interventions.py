"""(Being written.)"""

from fastapi import APIRouter

read = APIRouter()
write = APIRouter()
