// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// WattStream's reward token on an EVM chain: an OpenZeppelin ERC-20 that
/// accounts holding MINTER_ROLE mint with `mint(address,uint256)` (selector
/// 0x40c10f19, the call W3bstream's mint examples and our applets send). The
/// distributor holds the role to pay claims; a processor's chain key holds it
/// to mint from applets.
contract WattToken is ERC20, AccessControl {
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");

    constructor(string memory name_, string memory symbol_, address admin) ERC20(name_, symbol_) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(MINTER_ROLE, admin);
    }

    function mint(address to, uint256 amount) external onlyRole(MINTER_ROLE) {
        _mint(to, amount);
    }
}
