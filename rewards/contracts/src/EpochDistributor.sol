// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

interface IMintable {
    function mint(address to, uint256 amount) external;
}

/// Pays each device's owner its sealed epoch total, on a claim carrying the
/// same Merkle proof the meter verifies (`wattstream_sdk::proof`):
///
/// - leaf = sha256(0x00 ‖ device address (20 bytes) ‖ epoch total (uint128,
///   big-endian) ‖ balance (uint128) ‖ epoch (uint64));
/// - node = sha256(0x01 ‖ left ‖ right); a lone last node moves up as is.
///
/// The settler (the processor's chain key) publishes each sealed epoch's root
/// once, and the owner bindings (which EVM address owns a device from which
/// epoch on, as the processor's bindings records say). A claim pays the owner
/// of the device in that epoch, never the device's key hash, once per
/// (epoch, device); anyone may submit it.
contract EpochDistributor is AccessControl {
    bytes32 public constant SETTLER_ROLE = keccak256("SETTLER_ROLE");

    struct Binding {
        uint64 fromEpoch;
        address owner;
    }

    IMintable public immutable token;
    uint64 public immutable epochSeconds;
    mapping(uint64 => bytes32) public rootOf;
    mapping(uint64 => mapping(address => bool)) public claimed;
    mapping(address => Binding[]) private bindings;

    event Settled(uint64 indexed epoch, bytes32 root);
    event OwnerSet(address indexed device, address owner, uint64 fromEpoch);
    event Claimed(uint64 indexed epoch, address indexed device, address indexed owner, uint128 amount);

    error AlreadySettled(uint64 epoch);
    error EmptyRoot();
    error NotSettled(uint64 epoch);
    error AlreadyClaimed(uint64 epoch, address device);
    error BadProof();
    error NoOwner(address device, uint64 epoch);
    error BindingOutOfOrder(uint64 fromEpoch, uint64 last);
    error LengthMismatch();

    constructor(IMintable token_, uint64 epochSeconds_, address admin, address settler) {
        token = token_;
        epochSeconds = epochSeconds_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(SETTLER_ROLE, settler);
    }

    /// Publishes the root of sealed `epoch`; once.
    function settle(uint64 epoch, bytes32 root) external onlyRole(SETTLER_ROLE) {
        if (root == bytes32(0)) revert EmptyRoot();
        if (rootOf[epoch] != bytes32(0)) revert AlreadySettled(epoch);
        rootOf[epoch] = root;
        emit Settled(epoch, root);
    }

    /// `owner` owns `device` from `fromEpoch` on (address 0: nobody). Changes
    /// come in epoch order; a second change for the same epoch replaces the first.
    function setOwner(address device, address owner, uint64 fromEpoch) external onlyRole(SETTLER_ROLE) {
        _setOwner(device, owner, fromEpoch);
    }

    /// Many owner changes in one transaction, applied in the order given (a
    /// fleet's first settlement has one per device).
    function setOwners(address[] calldata devices, address[] calldata owners, uint64[] calldata fromEpochs)
        external
        onlyRole(SETTLER_ROLE)
    {
        if (devices.length != owners.length || devices.length != fromEpochs.length) revert LengthMismatch();
        for (uint256 i = 0; i < devices.length; i++) {
            _setOwner(devices[i], owners[i], fromEpochs[i]);
        }
    }

    function _setOwner(address device, address owner, uint64 fromEpoch) private {
        Binding[] storage b = bindings[device];
        if (b.length > 0) {
            Binding storage last = b[b.length - 1];
            if (fromEpoch < last.fromEpoch) revert BindingOutOfOrder(fromEpoch, last.fromEpoch);
            if (fromEpoch == last.fromEpoch) {
                last.owner = owner;
                emit OwnerSet(device, owner, fromEpoch);
                return;
            }
        }
        b.push(Binding(fromEpoch, owner));
        emit OwnerSet(device, owner, fromEpoch);
    }

    /// `ownerAt` for many `(device, epoch)` pairs in one call.
    function ownersAt(address[] calldata devices, uint64[] calldata epochs) external view returns (address[] memory owners) {
        if (devices.length != epochs.length) revert LengthMismatch();
        owners = new address[](devices.length);
        for (uint256 i = 0; i < devices.length; i++) {
            owners[i] = ownerAt(devices[i], epochs[i]);
        }
    }

    /// The owner of `device` in `epoch` (address 0 when none).
    function ownerAt(address device, uint64 epoch) public view returns (address) {
        Binding[] storage b = bindings[device];
        for (uint256 i = b.length; i > 0; i--) {
            if (b[i - 1].fromEpoch <= epoch) return b[i - 1].owner;
        }
        return address(0);
    }

    /// How many owner changes `device` has on chain.
    function bindingCount(address device) external view returns (uint256) {
        return bindings[device].length;
    }

    /// Pays `device`'s owner in `epoch` its `epochTotal`, proven against the
    /// epoch's root. `siblings[i]` sits on the left when `lefts[i]`.
    function claim(
        uint64 epoch,
        address device,
        uint128 epochTotal,
        uint128 balance,
        bytes32[] calldata siblings,
        bool[] calldata lefts
    ) external {
        bytes32 root = rootOf[epoch];
        if (root == bytes32(0)) revert NotSettled(epoch);
        if (claimed[epoch][device]) revert AlreadyClaimed(epoch, device);
        if (siblings.length != lefts.length) revert BadProof();
        bytes32 h = sha256(abi.encodePacked(bytes1(0x00), device, epochTotal, balance, epoch));
        for (uint256 i = 0; i < siblings.length; i++) {
            h = lefts[i]
                ? sha256(abi.encodePacked(bytes1(0x01), siblings[i], h))
                : sha256(abi.encodePacked(bytes1(0x01), h, siblings[i]));
        }
        if (h != root) revert BadProof();
        address owner = ownerAt(device, epoch);
        if (owner == address(0)) revert NoOwner(device, epoch);
        claimed[epoch][device] = true;
        token.mint(owner, epochTotal);
        emit Claimed(epoch, device, owner, epochTotal);
    }
}
