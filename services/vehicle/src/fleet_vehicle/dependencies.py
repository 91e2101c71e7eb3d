"""Dependencies the routers share: the broker administration and the Redis client."""

from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis

from fleet_vehicle.broker.credentials import DeviceBroker
from fleet_vehicle.devices.service import BrokerAddress


def _broker(request: Request) -> DeviceBroker:
    return request.app.state.device_broker


def _broker_address(request: Request) -> BrokerAddress:
    return request.app.state.broker_address


def _redis(request: Request) -> Redis:
    return request.app.state.redis


BrokerDep = Annotated[DeviceBroker, Depends(_broker)]
BrokerAddressDep = Annotated[BrokerAddress, Depends(_broker_address)]
RedisDep = Annotated[Redis, Depends(_redis)]
